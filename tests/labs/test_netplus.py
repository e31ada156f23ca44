"""netplus end to end: find a web server behind a router and collect what it serves.

Criteria (weights): find-server 1, save-page 2, inventory-serial 1 (total 4).
"""

from __future__ import annotations

import pytest

from .conftest import Lab, Platform, solution

pytestmark = pytest.mark.root


def test_untouched_lab_scores_zero(platform: Platform) -> None:
    out = platform.play("netplus")
    assert out.score["score"] == 0.0
    assert out.passed() == {"find-server": False, "save-page": False, "inventory-serial": False}


def test_reference_solution_scores_one(platform: Platform) -> None:
    solved: list[str] = []
    out = platform.play("netplus", lambda lab: solved.append(lab.solve("netplus").stdout_text))
    assert out.score["score"] == 1.0, out.score
    assert all(out.passed().values())
    # The solution found this lab's random port and code on the network.
    assert f"10.61.2.23:{out.variables['port']}" in solved[0]
    assert out.variables["code"] in solved[0]
    assert out.completed["variables"] == out.variables


def test_partial_solution_scores_a_quarter(platform: Platform) -> None:
    # A learner who found the server but stopped before downloading anything.
    script = solution("netplus").split("# 4.")[0]

    def act(lab: Lab) -> None:
        result = lab.sh(script)
        assert result.exit_code == 0, result.stderr_text
        assert lab.sh("cat /workspace/target.txt").stdout_text.strip() == \
            f"10.61.2.23:{lab.variables['port']}"

    out = platform.play("netplus", act)
    assert out.passed() == {"find-server": True, "save-page": False, "inventory-serial": False}
    assert out.score["score"] == 0.25


def test_gaming_attempts_fail_their_criteria(platform: Platform) -> None:
    def act(lab: Lab) -> None:
        port = lab.variables["port"]
        result = lab.sh(
            # Every candidate port instead of the one that answers.
            "seq 20000 29999 | sed 's/^/10.61.2.23:/' > /workspace/target.txt\n"
            # The real page with the proof code swapped for a guess.
            f"curl -s http://10.61.2.23:{port}/ "
            "| sed 's#<code>[^<]*</code>#<code>GuessedProofCode01234567</code>#' "
            "> /workspace/page.html\n"
            # Every serial number of the inventory instead of the web server's.
            f"curl -s http://10.61.2.23:{port}/inventory.txt | grep -o 'SN-[0-9a-f]*' "
            "> /workspace/serial.txt\n")
        assert result.exit_code == 0, result.stderr_text
        assert "GuessedProofCode" in lab.sh("cat /workspace/page.html").stdout_text

    out = platform.play("netplus", act)
    assert out.passed() == {"find-server": False, "save-page": False, "inventory-serial": False}
    assert out.score["score"] == 0.0


def test_answer_from_another_lab_is_wrong_here(platform: Platform) -> None:
    first = platform.spawn("netplus")
    first.solve("netplus")
    answers = {name: first.sh(f"cat /workspace/{name}").stdout for name in
               ("target.txt", "page.html", "serial.txt")}
    second = platform.spawn("netplus")
    for name, data in answers.items():
        second.platform.runtime.exec(second.id, "learner", ["/bin/sh", "-c",
                                     f"cat > /workspace/{name}"], stdin=data)
    platform.finish(first)
    out = platform.finish(second)
    assert out.variables["code"] != first.variables["code"]
    assert out.passed()["save-page"] is False and out.passed()["inventory-serial"] is False
