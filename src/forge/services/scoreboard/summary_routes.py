"""Score summaries of many scenarios in one call, for the instructor dashboard (issue 18
item 3).

spawn_service decides which labs an instructor may see (its store query is scoped to the
tenant and the cohort) and asks here, with the operator token, for the few facts the
dashboard shows of each: score, criteria passed of total, when graded, the ids of the
failed criteria and the hints charged. One request for a whole cohort instead of one per
lab; never check commands, outputs or expected values.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from forge.bus.errors import BusUnavailable
from forge.errors import ForgeError
from forge.evidence.artifact_store import ArtifactStore
from forge.services.common.auth import check_operator
from forge.services.common.openapi import errors
from forge.services.scoreboard.access import scoreboard_state
from forge_verify.score import CRITERION_ID_RE, SCENARIO_ID_RE

router = APIRouter()
MAX_IDS = 1000


def _operator(request: Request) -> None:
    check_operator(request, scoreboard_state(request).settings.operator)


class SummaryRequest(BaseModel):
    """The scenarios to summarise (well-formed ids only, at most MAX_IDS)."""

    model_config = ConfigDict(extra="forbid")
    scenario_ids: list[str] = Field(max_length=MAX_IDS)

    @field_validator("scenario_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for sid in value:
            if SCENARIO_ID_RE.fullmatch(sid) is None:
                raise ValueError("each id must look like scn-<16 hex digits>")
        return list(dict.fromkeys(value))


def summarize(data: bytes | None, scenario_id: str) -> dict[str, Any] | None:
    """The dashboard's facts of one score.json, or None when absent or unreadable."""
    if data is None:
        return None
    try:
        doc = json.loads(data)
        score = float(doc["score"])
        criteria = [c for c in doc["criteria"] if isinstance(c, dict)]
        out = {"tenant_id": str(doc["tenant_id"]), "subject": str(doc["subject"]),
               "score": score, "passed": int(doc["passed"]), "total": int(doc["total"]),
               "completed_at": str(doc["completed_at"]),
               "failed": [str(c["id"]) for c in criteria if c.get("passed") is not True
                          and CRITERION_ID_RE.fullmatch(str(c.get("id", "")))],
               "hints": len([h for h in doc.get("hints") or [] if isinstance(h, dict)])}
    except (ValueError, KeyError, TypeError):
        return None
    return out if doc.get("scenario_id") == scenario_id else None


def _read_all(store: ArtifactStore, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for sid in ids:
        summary = summarize(store.read_score(sid), sid)
        if summary is not None:
            found[sid] = summary
    return found


@router.post("/v1/admin/scores/summaries", tags=["admin"], dependencies=[Depends(_operator)],
             responses=errors(401, 422, 503))
async def score_summaries(body: SummaryRequest, request: Request) -> dict[str, Any]:
    """Score, criteria passed/total, graded time, failed criterion ids and hints charged of
    each listed scenario that has a result (others are left out)."""
    store = scoreboard_state(request).scorer.artifacts
    try:
        found = await run_in_threadpool(_read_all, store, body.scenario_ids)
    except BusUnavailable:
        raise ForgeError("bus_unavailable", 503, "the result store (NATS JetStream) is "
                         "unreachable; retry", headers={"Retry-After": "2"}) from None
    return {"summaries": found}
