"""Score summaries of many scenarios in one call, for the instructor dashboard (issue 18
item 3).

spawn_service decides which labs an instructor may see (its store query is scoped to the
tenant and the cohort) and asks here, with the operator token, for the few facts the
dashboard shows of each: score, criteria passed of total, when graded and the ids of the
failed criteria. One request for a whole cohort instead of one per lab; never check
commands, outputs or expected values.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from forge.bus.errors import BusUnavailable
from forge.evidence.artifact_store import ArtifactStore
from forge.services.common.openapi import errors
from forge.services.scoreboard.access import result_store_down, scoreboard_state
from forge.services.scoreboard.leaderboard import parse_score
from forge.services.scoreboard.routes import OperatorDep
from forge_verify.score import SCENARIO_ID_RE

router = APIRouter()
MAX_IDS = 1000
READS_AT_ONCE = 8  # score files read at the same time (a thread each)


def distinct_scenario_ids(value: list[str]) -> list[str]:
    """The ids of a request's list, each once in their order; ValueError (a 422 naming the
    field) for one that is not a well-formed scenario id."""
    for sid in value:
        if SCENARIO_ID_RE.fullmatch(sid) is None:
            raise ValueError("each id must look like scn-<16 hex digits>")
    return list(dict.fromkeys(value))


ScenarioIds = Annotated[list[str], AfterValidator(distinct_scenario_ids)]


class SummaryRequest(BaseModel):
    """The scenarios to summarise (well-formed ids only, at most MAX_IDS)."""

    model_config = ConfigDict(extra="forbid")
    scenario_ids: ScenarioIds = Field(max_length=MAX_IDS)


def summarize(data: bytes | None, scenario_id: str) -> dict[str, Any] | None:
    """The dashboard's facts of one score.json, or None when absent, unreadable, about
    another scenario or without a finite score (the leaderboard's reading of it)."""
    row = parse_score(data)
    if row is None or row.scenario_id != scenario_id:
        return None
    return {"tenant_id": row.tenant_id, "subject": row.subject, "score": row.score,
            "passed": row.passed, "total": row.total, "completed_at": row.completed_at,
            "failed": list(row.failed)}


async def _read_all(store: ArtifactStore, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each id's summary, READS_AT_ONCE files at a time: a cohort of 1,000 labs is not read
    one file after another, nor with 1,000 threads."""
    gate = asyncio.Semaphore(READS_AT_ONCE)

    async def one(sid: str) -> dict[str, Any] | None:
        async with gate:
            return summarize(await run_in_threadpool(store.read_score, sid), sid)

    found = await asyncio.gather(*(one(sid) for sid in ids))
    return {sid: s for sid, s in zip(ids, found, strict=True) if s is not None}


@router.post("/v1/admin/scores/summaries", tags=["admin"], dependencies=[OperatorDep],
             responses=errors(401, 422, 503))
async def score_summaries(body: SummaryRequest, request: Request) -> dict[str, Any]:
    """Score, criteria passed/total, graded time and failed criterion ids of each listed
    scenario that has a readable result (others, and results without a finite score, are
    left out)."""
    store = scoreboard_state(request).scorer.artifacts
    try:
        found = await _read_all(store, body.scenario_ids)
    except BusUnavailable:
        raise result_store_down() from None
    return {"summaries": found}
