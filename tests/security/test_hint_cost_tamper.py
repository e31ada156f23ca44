"""Attack: a verdict whose score ignores a hint the learner revealed.

Revealed hints are recorded in the store, read by the scoreboard, listed in score.json
(`hints`) and in the bundle (`aids.json`), and their cost is taken off the score. A scorer that
forgets them, or a holder of a signing key who re-signs a set without the charge, used to get a
PASS (before, nothing recorded hints at all). Now the offline verifier recomputes the score
with the charge and compares score.json's hints with the bundle's: either lie is a FAIL
(`score_inconsistent` / `criterion_inconsistent`), and the platform refuses to sign one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from forge.evidence.artifacts import EvidenceInputs, build_artifacts
from forge_verify.aids import AIDS_MEMBER, aids_document
from forge_verify.bundle import MANIFEST, build_bundle, read_bundle, sha256_hex
from forge_verify.canonical import dumps_file, loads
from forge_verify.score import HintUse, ScoreInputError
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
KEY = fixed_key(13)  # trusted below: origin is proven, only the score check can fail
HINT = HintUse("h2", "report", 0.25, "2026-03-01T11:20:00Z")
RAW = 0.75  # the sample's weights 2+1+1, report failed


def _honest(tmp_path: Path) -> dict[str, bytes]:
    inputs = replace(score_inputs(), hints=(HINT,))
    art = build_artifacts(inputs, EvidenceInputs(
        TEMPLATE, POLICY, audit_log(tmp_path, signer=KEY), CRITERIA,
        aids=aids_document([HINT], [{"criterion": "report", "at": "2026-03-01T11:10:00Z",
                                "passed": False}])), KEY, signed_at=SIGNED_AT)
    return art.files()


def _resigned(directory: Path, score_doc: dict[str, Any], members: dict[str, bytes]) -> Path:
    """score.json + bundle re-signed with KEY, as a key holder would."""
    score_json = dumps_file(score_doc)
    bundle = build_bundle(SCENARIO_ID, members)
    statement = build_statement(
        score_sha256=sha256_hex(score_json), bundle_name="evidence.tar.zst",
        bundle_sha256=sha256_hex(bundle), scenario_id=SCENARIO_ID, score=score_doc["score"],
        passed=score_doc["passed"], total=score_doc["total"], signed_at=SIGNED_AT,
        key_id=KEY.key_id)
    directory.mkdir(parents=True)
    for name, data in {"score.json": score_json, "evidence.tar.zst": bundle,
                       "verdict.sig": sign_statement(statement, KEY).to_json(),
                       "verdict.pub": KEY.public_pem(), "trusted.pem": KEY.public_pem()}.items():
        (directory / name).write_bytes(data)
    return directory


def _verify(directory: Path) -> tuple[int, dict[str, Any]]:
    names = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *(str(directory / n) for n in names),
         "--trusted-key", str(directory / "trusted.pem"), "--json"],
        capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_revealed_hints_are_charged_and_every_way_of_ignoring_one_fails(tmp_path: Path) -> None:
    files = _honest(tmp_path)
    doc = loads(files["score.json"])
    assert doc["raw_score"] == RAW and doc["score"] == 0.5  # 0.75 - 0.25
    assert doc["hints"] == [HINT.to_document()]
    members = read_bundle(files["evidence.tar.zst"])
    aids = loads(members[AIDS_MEMBER])
    assert aids["hints"] == [HINT.to_document()] and len(aids["task_checks"]) == 1
    del members[MANIFEST]

    honest = _resigned(tmp_path / "honest", doc, dict(members))
    code, report = _verify(honest)
    assert code == 0 and report["status"] == "PASS", report["reasons"]
    assert report["score"] == 0.5

    # 1. The hint stays listed, but the score is the raw one: recomputation disagrees.
    code, report = _verify(_resigned(tmp_path / "ignored", {**doc, "score": RAW},
                                     dict(members)))
    assert code == 1 and [r["code"] for r in report["reasons"]] == ["score_inconsistent"]

    # 2. The hint is dropped from score.json, which then "recomputes" fine on its own:
    # the bundle's record of what was revealed catches it.
    dropped = {k: v for k, v in doc.items() if k not in ("hints", "raw_score")}
    code, report = _verify(_resigned(tmp_path / "dropped", {**dropped, "score": RAW},
                                     dict(members)))
    assert code == 1 and report["reasons"][0]["code"] == "criterion_inconsistent"
    assert "revealed hints recorded in aids.json" in report["reasons"][0]["message"]

    # 3. The hint listed at a lower cost than the bundle recorded.
    cheaper = {**doc, "hints": [{**HINT.to_document(), "cost": 0.0}], "score": RAW}
    code, report = _verify(_resigned(tmp_path / "cheaper", cheaper, dict(members)))
    assert code == 1 and report["reasons"][0]["code"] == "criterion_inconsistent"


def test_the_platform_never_signs_a_score_that_ignores_a_recorded_hint(tmp_path: Path) -> None:
    evidence = EvidenceInputs(TEMPLATE, POLICY, audit_log(tmp_path, signer=KEY), CRITERIA,
                              aids=aids_document([HINT], []))
    with pytest.raises(ScoreInputError, match=r"revealed hints recorded in aids\.json"):
        build_artifacts(score_inputs(), evidence, KEY, signed_at=SIGNED_AT)


def test_costs_out_of_bounds_are_refused_naming_the_field() -> None:
    for cost in (-0.1, 0.6, float("nan"), True):
        with pytest.raises(ScoreInputError, match=r"hints\[h2\]\.cost"):
            HintUse("h2", "report", cost, "2026-03-01T11:20:00Z")  # type: ignore[arg-type]
