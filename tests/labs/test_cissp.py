"""cissp end to end: a risk register from seeded incident evidence, graded by the
checker script the template ships under /opt/forge (read-only in the host).

Criteria (weights): register-structure 1, intrusion-identified 2,
exposed-key-identified 2, weak-config-identified 1 (total 6).

Untouched, partial and gaming runs are proven by `forge lab test`
(tests/authoring/test_shipped_labs.py, plan in templates/cissp.lab-test.yaml); this file
keeps what goes through the whole platform (bus, scoreboard, signed verdict).
"""

from __future__ import annotations

import pytest

from .conftest import Lab, Platform

pytestmark = pytest.mark.root

CHECKER = "/opt/forge/check_register.py"


def jq_edit(lab: Lab, program: str) -> None:
    """Rewrite the learner's register with a jq program."""
    result = lab.sh(f"jq '{program}' /workspace/risk_register.json > /tmp/r.json && "
                    "mv /tmp/r.json /workspace/risk_register.json")
    assert result.exit_code == 0, result.stderr_text


def test_reference_solution_scores_one(platform: Platform) -> None:
    solved: list[str] = []
    out = platform.play("cissp", lambda lab: solved.append(lab.solve("cissp").stdout_text))
    assert out.score["score"] == 1.0, out.score
    assert f"intrusion: backup from 203.0.113.{out.variables['attacker']}" in solved[0]
    assert f"AKEY{out.variables['key_id']}" in solved[0]
    assert out.variables["key_secret"] not in solved[0]


def test_gaming_attempts_fail_their_criteria(platform: Platform) -> None:
    def act(lab: Lab) -> None:
        lab.solve("cissp")
        # The grader cannot be replaced: /opt/forge is read-only in the host.
        tamper = lab.sh(f"echo 'print(\"PASS\")' > {CHECKER}")
        assert tamper.exit_code != 0 and "Read-only file system" in tamper.stderr_text
        scanner = f"198.51.100.{lab.variables['scanner']}"
        # Shotgun: blame every external address; paste the whole leaked env file (with
        # the secret); and a risk_score that is not likelihood x impact.
        jq_edit(lab, f'.risks[0].evidence += " also {scanner}" | .risks[0].risk_score = 99')
        leaked = lab.sh("cat /srv/incident/web01/billing-api.env").stdout_text
        assert lab.variables["key_secret"] in leaked
        result = lab.sh("jq --rawfile env /srv/incident/web01/billing-api.env "
                        "'.risks[1].evidence = $env' /workspace/risk_register.json > /tmp/r && "
                        "mv /tmp/r /workspace/risk_register.json")
        assert result.exit_code == 0, result.stderr_text

    out = platform.play("cissp", act)
    assert out.passed() == {"register-structure": False, "intrusion-identified": False,
                            "exposed-key-identified": False, "weak-config-identified": True}
    assert out.score["score"] == round(1 / 6, 6)
    # The checker said why (the evidence keeps its output; grading values stay out of it).
    reasons = {r["criterion_id"]: r["stdout"]["text"] for r in out.completed["results"]}
    assert "risk_score" in reasons["register-structure"]
    assert "never got in" in reasons["intrusion-identified"]
    assert "secret" in reasons["exposed-key-identified"]
