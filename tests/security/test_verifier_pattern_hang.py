"""Attack: a bundle whose criteria.json expects a catastrophically backtracking pattern
(`^(a|a)+$`) of an output made for it (`aaaa…a!`), which holds Python's regular expression
engine for ever (2**N steps; there is no time bound).

Before, the verifier judged every check again from whatever bundle it was given: a genuine
verdict.sig/verdict.pub with an altered score.json and bundle (the signed digests failing),
or a set signed with the attacker's own key and checked without --trusted-key, ran for ever.
Now checks are judged again only for content the statement signs (both digests match) and
whose origin a trusted key proves; otherwise the report says they were not judged and why.
The tests replace the judging rule with one that fails the test, so they prove judging was
never reached (they do not time anything; the output is kept short so a regression is slow,
not endless).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from forge_verify import VerifyResult, render_text
from forge_verify.canonical import dumps_file, loads
from forge_verify.rules import CRITERIA_MEMBER

from .verdict_sets import codes, sample, signed, verify

PATTERN = "^(a|a)+$"
OUTPUT = b"a" * 22 + b"!"
STDOUT = "checks/find-target/1/stdout.txt"


def _hostile(score_json: bytes, members: dict[str, bytes]) -> bytes:
    """Put PATTERN as find-target[1]'s expectation and OUTPUT as its recorded stdout; the
    check stays recorded as passed. Returns the edited score.json (members edited in place)."""
    criteria = loads(members[CRITERIA_MEMBER])
    criteria["criteria"][0]["checks"][1]["expect"] = {"stdout_regex": PATTERN}
    members[CRITERIA_MEMBER] = dumps_file(criteria)
    members[STDOUT] = OUTPUT
    doc = loads(score_json)
    doc["criteria"][0]["checks"][1]["stdout"].update(
        sha256=hashlib.sha256(OUTPUT).hexdigest(), size=len(OUTPUT))
    return dumps_file(doc)


def _verify(files: dict[str, bytes], trusted: bool) -> VerifyResult:
    """Verify with the judging rule replaced by one that fails the test (the sample set is
    built before: the platform judges what it signs)."""
    def refuse(*_: object) -> None:
        raise AssertionError("a check was judged (a bundle pattern ran)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("forge_verify.rejudge.judge_recorded", refuse)
        return verify(files, trusted=trusted)


def _not_judged(res: VerifyResult, why: str) -> None:
    assert "criterion_inconsistent" not in codes(res)
    assert any(n.startswith("checks were not judged again") and why in n for n in res.notes)
    assert not any("judged again from criteria.json" in c for c in res.checked)
    assert "checks were not judged again" in render_text(res)


def test_altered_files_under_a_genuine_signature_are_not_judged(tmp_path: Path) -> None:
    score_json, members = sample(tmp_path)
    genuine = signed(score_json, members)
    altered = signed(_hostile(score_json, members), members)
    files = {**altered, "verdict.sig": genuine["verdict.sig"]}  # the genuine statement
    for trusted in (True, False):
        res = _verify(files, trusted)
        assert codes(res)[:2] == ["score_digest_mismatch", "bundle_digest_mismatch"]
        _not_judged(res, "not what the verdict signs")


def test_a_self_signed_set_is_not_judged_without_a_trusted_key(tmp_path: Path) -> None:
    score_json, members = sample(tmp_path)
    files = signed(_hostile(score_json, members), members)
    res = _verify(files, False)
    assert res.ok and res.origin == "not_checked"  # integrity holds: the attacker signed it
    _not_judged(res, "origin is not proven")


def test_hints_are_still_compared_without_a_trusted_key(tmp_path: Path) -> None:
    score_json, members = sample(tmp_path)
    members["aids.json"] = dumps_file({"hints": [{"id": "h1", "criterion": "report", "cost": 0.1,
                                                  "revealed_at": "2026-03-01T11:30:00Z"}],
                                       "task_checks": []})
    res = _verify(signed(score_json, members), False)
    assert codes(res) == ["criterion_inconsistent"]
    assert "differ from the 1 revealed hints recorded in aids.json" in res.reasons[0].message
