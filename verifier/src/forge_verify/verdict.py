"""The verdict: an in-toto Statement v1 about score.json and the bundle, in a DSSE envelope.

Subjects are `score.json` and the bundle file with their sha256; the predicate repeats
what a reader of the verdict alone needs (scenario, score, passed, total, signing time and
key id). Standard library + cryptography only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forge_verify.canonical import CanonicalJSONError, dumps, loads
from forge_verify.dsse import INTOTO_PAYLOAD_TYPE, Envelope, sign_envelope
from forge_verify.keys import Signer
from forge_verify.score import format_time

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://frostgate.dev/forge/verdict/v1"
SCORE_NAME = "score.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class StatementError(ValueError):
    """The signed payload is not a Forge verdict statement; the message names the field."""


@dataclass(frozen=True)
class Verdict:
    """What a verdict states, as read back from its statement."""

    score_sha256: str
    bundle_name: str
    bundle_sha256: str
    scenario_id: str
    score: float
    passed: int
    total: int
    signed_at: str
    key_id: str


def build_statement(
    *, score_sha256: str, bundle_name: str, bundle_sha256: str, scenario_id: str,
    score: float, passed: int, total: int, signed_at: datetime, key_id: str,
) -> dict[str, Any]:
    """The in-toto Statement v1 document."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": SCORE_NAME, "digest": {"sha256": score_sha256}},
            {"name": bundle_name, "digest": {"sha256": bundle_sha256}},
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "scenario_id": scenario_id, "score": score, "passed": passed, "total": total,
            "signed_at": format_time(signed_at, "signed_at"), "key_id": key_id,
        },
    }


def sign_statement(statement: dict[str, Any], signer: Signer) -> Envelope:
    """DSSE-sign the canonical JSON of `statement`."""
    return sign_envelope(dumps(statement), INTOTO_PAYLOAD_TYPE, signer)


def _digest(subject: Any, i: int) -> tuple[str, str]:
    if not isinstance(subject, dict) or not isinstance(subject.get("name"), str):
        raise StatementError(f"subject[{i}].name: missing")
    digest = subject.get("digest")
    sha = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(sha, str) or _HEX64.fullmatch(sha) is None:
        raise StatementError(f"subject[{i}].digest.sha256: missing or not 64 hex digits")
    return subject["name"], sha


def parse_statement(envelope: Envelope) -> Verdict:
    """Read a verdict from an envelope's payload (signature checked elsewhere)."""
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise StatementError(f"payloadType: {envelope.payload_type!r} is not "
                             f"{INTOTO_PAYLOAD_TYPE!r}")
    try:
        doc = loads(envelope.payload)
    except CanonicalJSONError as exc:
        raise StatementError(f"payload: {exc}") from None
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise StatementError(f"_type: not {STATEMENT_TYPE}")
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise StatementError(f"predicateType: not {PREDICATE_TYPE}")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 2:
        raise StatementError("subject: must name score.json and the bundle")
    digests = [_digest(s, i) for i, s in enumerate(subjects)]
    scores = [d for d in digests if d[0] == SCORE_NAME]
    bundles = [d for d in digests if d[0] != SCORE_NAME]
    if len(scores) != 1 or len(bundles) != 1:
        raise StatementError("subject: must name score.json once and one bundle")
    pred = doc.get("predicate")
    if not isinstance(pred, dict):
        raise StatementError("predicate: missing")
    for name, kind in (("scenario_id", str), ("signed_at", str), ("key_id", str),
                       ("passed", int), ("total", int)):
        if not isinstance(pred.get(name), kind) or isinstance(pred.get(name), bool):
            raise StatementError(f"predicate.{name}: missing or wrong type")
    score = pred.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise StatementError("predicate.score: missing or not a number")
    return Verdict(
        score_sha256=scores[0][1], bundle_name=bundles[0][0], bundle_sha256=bundles[0][1],
        scenario_id=pred["scenario_id"], score=float(score), passed=pred["passed"],
        total=pred["total"], signed_at=pred["signed_at"], key_id=pred["key_id"],
    )
