"""Hostile verdict sets for verifier tests: the sample lab's files, edited, then signed again.

A set signed again with KEY (passed as trusted where a test wants origin proven) verifies
in every digest and signature, so only the check under test can fail it.
"""

from __future__ import annotations

from pathlib import Path

from forge_verify import VerifyResult, verify_artifacts
from forge_verify.bundle import MANIFEST, build_bundle, read_bundle, sha256_hex
from forge_verify.canonical import loads
from forge_verify.verdict import build_statement, sign_statement

from ..evidence.sample import SCENARIO_ID, SIGNED_AT, build, fixed_key

KEY = fixed_key(17)
BUNDLE = "evidence.tar.zst"


def sample(tmp_path: Path) -> tuple[bytes, dict[str, bytes]]:
    """The sample lab's score.json and bundle members (manifest left out), signed by KEY."""
    art = build(tmp_path / "sample", key=KEY)
    members = read_bundle(art.bundle)
    del members[MANIFEST]
    return art.score_json, members


def signed(score_json: bytes, members: dict[str, bytes]) -> dict[str, bytes]:
    """The four files, with a bundle whose manifest lists `members` and a statement signed
    by KEY over both (score/passed/total copied from score.json when it parses)."""
    bundle = build_bundle(SCENARIO_ID, members)
    try:
        doc = loads(score_json)
    except ValueError:
        doc = {}
    statement = build_statement(
        score_sha256=sha256_hex(score_json), bundle_name=BUNDLE,
        bundle_sha256=sha256_hex(bundle), scenario_id=SCENARIO_ID,
        score=doc.get("score", 1.0), passed=doc.get("passed", 3), total=doc.get("total", 3),
        signed_at=SIGNED_AT, key_id=KEY.key_id)
    return {"score.json": score_json, BUNDLE: bundle,
            "verdict.sig": sign_statement(statement, KEY).to_json(),
            "verdict.pub": KEY.public_pem()}


def verify(files: dict[str, bytes], *, trusted: bool = True) -> VerifyResult:
    """The verifier's result for `files`, with KEY trusted unless told otherwise."""
    return verify_artifacts(files["score.json"], files[BUNDLE], BUNDLE, files["verdict.sig"],
                            files["verdict.pub"],
                            trusted=[KEY.public_key] if trusted else None)


def codes(res: VerifyResult) -> list[str]:
    """The reason codes, in order."""
    return [r.code for r in res.reasons]
