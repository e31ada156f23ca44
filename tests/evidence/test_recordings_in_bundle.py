"""Terminal recordings in the signed bundle: covered by the manifest, checked for shape by the
offline verifier, and never judged (the score is the same with or without them)."""

from __future__ import annotations

from pathlib import Path

from forge.evidence.artifacts import EvidenceInputs, build_artifacts
from forge_verify import verify_artifacts
from forge_verify.bundle import read_bundle

from .sample import CRITERIA, POLICY, SIGNED_AT, TEMPLATE, audit_log, fixed_key, score_inputs

CAST = (b'{"height": 24, "title": "lab host learner", "version": 2, "width": 80}\n'
        b'[0.5, "i", "ls\\r"]\n[0.6, "o", "report.md\\r\\n"]\n[1.0, "r", "100x30"]\n')


def _signed(tmp: Path, recordings: dict[str, bytes]) -> tuple[bool, list[str], list[str], float]:
    key = fixed_key()
    evidence = EvidenceInputs(TEMPLATE, POLICY, audit_log(tmp, signer=key), CRITERIA, recordings)
    art = build_artifacts(score_inputs(), evidence, key, signed_at=SIGNED_AT)
    assert {n for n in read_bundle(art.bundle) if n.startswith("recordings/")} == {
        f"recordings/{n}" for n in recordings}
    res = verify_artifacts(art.score_json, art.bundle, art.bundle_name, art.verdict_sig,
                           art.verdict_pub)
    return res.ok, [r.code for r in res.reasons], res.checked, art.summary.score


def test_a_recording_is_covered_and_checked_but_not_judged(tmp_path: Path) -> None:
    ok, codes, checked, score = _signed(tmp_path / "a", {"learner.1.cast": CAST})
    assert ok and codes == []
    assert "1 terminal recording(s) are well-formed asciicast v2" in checked
    assert score == _signed(tmp_path / "b", {})[3]  # evidence only, never graded


def test_a_signed_member_that_is_not_a_recording_fails_with_its_reason(tmp_path: Path) -> None:
    ok, codes, _, _ = _signed(tmp_path, {"learner.1.cast": b"rm -rf /\n"})
    assert not ok and codes == ["recording_invalid"]
