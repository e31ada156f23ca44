"""The learner's aids in a verdict: hints revealed and "check this task" runs.

The bundle member `aids.json` records them as the platform stored them when the lab was
graded: `{"hints": [...], "task_checks": [...]}`. score.json lists the same hints (their cost
is applied in its score, see `forge_verify.score`); a score.json whose hints differ from the
bundle's, or that lists none while the bundle records some, is inconsistent. Evidence from
before hints has neither and stays valid. Task checks never change the score.

Standard library only: the offline verifier imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from forge_verify.canonical import CanonicalJSONError, loads
from forge_verify.score import HintUse, ScoreInputError, hints_from_document

AIDS_MEMBER = "aids.json"


def aids_document(hints: Sequence[HintUse], task_checks: Sequence[Mapping[str, Any]]
                  ) -> dict[str, Any]:
    """The `aids.json` body: revealed hints and task-check runs, in recorded order."""
    return {"hints": [h.to_document() for h in hints],
            "task_checks": [dict(c) for c in task_checks]}


def aids_problems(doc: Mapping[str, Any], members: Mapping[str, bytes]) -> list[str]:
    """Every disagreement between score.json's hints and the bundle's `aids.json`."""
    raw = members.get(AIDS_MEMBER)
    try:
        stated = hints_from_document(dict(doc))
    except ScoreInputError as exc:
        return [f"score.json: {exc}"]
    if raw is None:
        return [f"score.json lists revealed hints but the bundle has no {AIDS_MEMBER}"] \
            if stated else []
    try:
        body = loads(raw)
        recorded = hints_from_document(body if isinstance(body, dict) else {"hints": None})
    except (CanonicalJSONError, ScoreInputError) as exc:
        return [f"{AIDS_MEMBER}: {exc}"]
    if recorded != stated:
        return [f"score.json's hints ({len(stated)}) differ from the {len(recorded)} "
                f"revealed hints recorded in {AIDS_MEMBER}: the score must charge every one"]
    return []
