"""Attack: a verdict whose score.json records checks as passed that their own outputs fail,
signed with a valid key (a scoreboard that trusted a forged event, or a holder of a key).

Every digest and signature of such a set verifies, so before, `scripts/verify_verdict.py`
answered PASS. Now the verifier judges every check again from the bundle - the rendered
criteria (`criteria.json`) and the recorded outputs - with the same rule as the grader and the
scoreboard, and reports `criterion_inconsistent` (exit 1) for each disagreement. The sets are
signed with a test key that is passed as trusted, so only the judging can catch them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from forge.evidence.artifacts import EvidenceInputs, build_artifacts
from forge_verify.bundle import MANIFEST, build_bundle, read_bundle, sha256_hex
from forge_verify.canonical import dumps_file, loads
from forge_verify.rules import CRITERIA_MEMBER
from forge_verify.verdict import build_statement, sign_statement

from ..evidence.sample import (
    CRITERIA,
    POLICY,
    SCENARIO_ID,
    SIGNED_AT,
    TEMPLATE,
    audit_log,
    fixed_key,
    score_inputs,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "verify_verdict.py"
KEY = fixed_key(11)  # a test key; trusted below, so origin is proven and only judging fails


def _signed_set(directory: Path, score_json: bytes, members: dict[str, bytes]) -> Path:
    """score.json + a bundle of `members`, with a valid statement signed by KEY, on disk."""
    doc = loads(score_json)
    bundle = build_bundle(SCENARIO_ID, members)
    statement = build_statement(
        score_sha256=sha256_hex(score_json), bundle_name="evidence.tar.zst",
        bundle_sha256=sha256_hex(bundle), scenario_id=SCENARIO_ID, score=doc["score"],
        passed=doc["passed"], total=doc["total"], signed_at=SIGNED_AT, key_id=KEY.key_id)
    files = {"score.json": score_json, "evidence.tar.zst": bundle,
             "verdict.sig": sign_statement(statement, KEY).to_json(),
             "verdict.pub": KEY.public_pem()}
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / "trusted.pem").write_bytes(KEY.public_pem())
    return directory


def _verify(directory: Path) -> tuple[int, dict[str, Any]]:
    names = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *(str(directory / n) for n in names),
         "--trusted-key", str(directory / "trusted.pem"), "--json"],
        capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, json.loads(proc.stdout)


def _forged(tmp_path: Path, edit: Callable[[dict[str, bytes]], None] | None = None,
            flip: bool = True) -> Path:
    """The sample lab with report[1] (exit 1, `grep: no match`) recorded as passed: 1.0."""
    inputs = score_inputs()
    results = tuple(replace(r, passed=True) if flip else r for r in inputs.results)
    # Built without criteria, so build_artifacts' own judging does not stop the forgery...
    art = build_artifacts(replace(inputs, results=results),
                          EvidenceInputs(TEMPLATE, POLICY, audit_log(tmp_path, signer=KEY)),
                          KEY, signed_at=SIGNED_AT)
    members = read_bundle(art.bundle)
    del members[MANIFEST]
    # ...then the real criteria are put in the bundle, and the whole set is signed again.
    members[CRITERIA_MEMBER] = dumps_file(CRITERIA)
    if edit is not None:
        edit(members)
    return _signed_set(tmp_path / "set", art.score_json, members)


def test_resigned_set_with_a_forged_pass_fails_criterion_inconsistent(tmp_path: Path) -> None:
    code, report = _verify(_forged(tmp_path))
    assert (report["score"], report["passed"], report["total"]) == (1.0, 3, 3)
    assert report["origin"] == "proven"  # signature and key are fine...
    assert code == 1 and report["status"] == "FAIL"  # ...the judging is not
    reasons = [r for r in report["reasons"] if r["code"] == "criterion_inconsistent"]
    assert len(reasons) == 1 and len(report["reasons"]) == 1, report["reasons"]
    assert "report[1]" in reasons[0]["message"]
    assert "exit code 1, expected 0" in reasons[0]["message"]


def test_criteria_that_disagree_with_score_json_are_reported(tmp_path: Path) -> None:
    def other_command(members: dict[str, bytes]) -> None:
        doc = loads(members[CRITERIA_MEMBER])
        doc["criteria"][0]["checks"][0]["command"] = ["cat", "/etc/hostname"]
        members[CRITERIA_MEMBER] = dumps_file(doc)

    _forged(tmp_path, other_command, flip=False)
    code, report = _verify(tmp_path / "set")
    assert code == 1
    assert [r["code"] for r in report["reasons"]] == ["criterion_inconsistent"]
    assert "find-target[0]: container or command differ" in report["reasons"][0]["message"]


def test_malformed_criteria_are_reported(tmp_path: Path) -> None:
    def broken(members: dict[str, bytes]) -> None:
        doc = loads(members[CRITERIA_MEMBER])
        doc["criteria"][1]["checks"][0]["expect"] = {"exit_code": "0"}
        members[CRITERIA_MEMBER] = dumps_file(doc)

    _forged(tmp_path, broken, flip=False)
    code, report = _verify(tmp_path / "set")
    assert code == 1 and report["reasons"][0]["code"] == "criterion_inconsistent"
    assert "expect.exit_code: not an integer" in report["reasons"][0]["message"]


def test_honest_set_passes_and_says_it_judged_again(tmp_path: Path) -> None:
    _forged(tmp_path, flip=False)
    code, report = _verify(tmp_path / "set")
    assert code == 0 and report["status"] == "PASS", report["reasons"]
    assert any("judged again" in c for c in report["checked"])


def test_a_set_without_criteria_is_reported_as_not_judged_again(tmp_path: Path) -> None:
    def strip(members: dict[str, bytes]) -> None:
        del members[CRITERIA_MEMBER]

    _forged(tmp_path, strip, flip=False)
    code, report = _verify(tmp_path / "set")
    assert code == 0
    assert any("were not judged again" in n for n in report["notes"])
