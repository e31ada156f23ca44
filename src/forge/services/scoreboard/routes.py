"""Scoreboard HTTP API: score reads and leaderboard (tenant-scoped), operator admin."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from forge.bus.errors import BusUnavailable
from forge.errors import ForgeError, invalid_field
from forge.evidence.artifacts import PUB_NAME, SIG_NAME
from forge.identity.names import valid_id
from forge.services.common.openapi import errors
from forge.services.scoreboard.access import (
    Reader,
    current_reader,
    operator_only,
    owned_file,
    owned_results,
    result_store_down,
    scoreboard_state,
)
from forge.services.scoreboard.leaderboard import as_seen_by
from forge.services.scoreboard.reprocess import (
    failed_event_dict,
    list_events,
    list_last_reprocessed,
    list_recent_events,
    reprocess,
)
from forge_verify import verify_artifacts
from forge_verify.bundle import BUNDLE_NAMES
from forge_verify.verdict import SCORE_NAME

router = APIRouter()

ARTIFACT_TYPES = {
    SCORE_NAME: "application/json",
    SIG_NAME: "application/vnd.dsse.envelope.v1+json",
    PUB_NAME: "application/x-pem-file",
    BUNDLE_NAMES["zst"]: "application/zstd",
    BUNDLE_NAMES["gz"]: "application/gzip",
}
ReaderDep = Annotated[Reader, Depends(current_reader)]
MAX_BOARD_OFFSET = 10_000_000  # past any tenant's learners; a larger number is a 422


def verification_summary(request: Request, files: dict[str, bytes]) -> dict[str, Any]:
    """What the offline verifier says of a result set, against this installation's keys."""
    bundle = next((n for n in BUNDLE_NAMES.values() if n in files), None)
    if bundle is None or SIG_NAME not in files or PUB_NAME not in files:
        return {"status": "FAIL", "ok": False, "reasons": [
            {"code": "missing_file", "message": "result set is incomplete"}]}
    ring = scoreboard_state(request).scorer.keyring
    trusted = list(ring.trusted_public_keys().values())
    res = verify_artifacts(files[SCORE_NAME], files[bundle], bundle, files[SIG_NAME],
                           files[PUB_NAME], trusted=trusted)
    revoked = res.key_id is not None and res.key_id in ring.revoked_ids()
    reasons = [{"code": "revoked_key", "message": f"signed by key {res.key_id}, which the "
                "operator revoked; it is signed again with `forge keys resign`"}
               if revoked and r.code == "untrusted_key" else
               {"code": r.code, "message": r.message} for r in res.reasons]
    return {"status": res.status, "ok": res.ok, "origin": res.origin, "key_id": res.key_id,
            "reasons": reasons}


@router.get("/v1/scores/{scenario_id}", tags=["scores"], responses=errors(401, 404, 503))
async def get_score(scenario_id: str, request: Request, reader: ReaderDep) -> dict[str, Any]:
    """score.json of a scenario plus a verification summary (owner or operator only)."""
    files = await run_in_threadpool(owned_results, scoreboard_state(request), reader,
                                     scenario_id)
    verification = await run_in_threadpool(verification_summary, request, files)
    return {"scenario_id": scenario_id, "score": json.loads(files[SCORE_NAME]),
            "verification": verification,
            "artifacts": sorted(n for n in files if n in ARTIFACT_TYPES)}


@router.get("/v1/scores/{scenario_id}/artifacts/{name}", tags=["scores"],
            responses=errors(401, 404, 503))
async def get_artifact(scenario_id: str, name: str, request: Request,
                       reader: ReaderDep) -> Response:
    """One of the four result files, byte for byte (owner or operator only)."""
    if name not in ARTIFACT_TYPES:
        raise ForgeError("not_found", 404, "name: no such result file; one of "
                         + ", ".join(sorted(ARTIFACT_TYPES)),
                         [{"field": "name", "allowed": sorted(ARTIFACT_TYPES)}])
    data = await run_in_threadpool(owned_file, scoreboard_state(request), reader,
                                    scenario_id, name)
    return Response(data, media_type=ARTIFACT_TYPES[name],
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "private, no-store",
                             "X-Content-Type-Options": "nosniff"})


@router.get("/v1/leaderboard", tags=["scores"], responses=errors(400, 401, 403, 503))
async def leaderboard(
    request: Request, reader: ReaderDep,
    track: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z0-9_-]+$")] = None,
    tenant_id: Annotated[str | None, Query(
        max_length=128, description="The tenant to rank; required with the operator token "
        "(answered 400 without it), ignored for learners (their own tenant).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_BOARD_OFFSET, description=(
        "Entries ranked before this many are left out: the `next_offset` of the previous "
        "page."))] = 0,
) -> dict[str, Any]:
    """Best score per subject and stats of the caller's tenant only; a learner sees the
    others under pseudonyms (``leaderboard.as_seen_by``), the operator their account ids.
    A page at a time: `limit` entries from rank `offset` + 1, `next_offset` for the next
    (null on the last)."""
    own: str | None = None
    if reader.operator:
        if not valid_id(tenant_id):
            raise ForgeError("tenant_required", 400,
                             "tenant_id: required (a valid tenant id) with the operator token",
                             [{"field": "tenant_id", "problem": "required"}])
        tenant = str(tenant_id)
    else:
        assert reader.caller is not None
        # A lab's access-link session sees that lab, not its colleagues' scores (403).
        tenant = reader.caller.whole_account().tenant_id
        own = reader.caller.subject
    state = scoreboard_state(request)
    try:
        board = await run_in_threadpool(state.index.board, tenant, track, limit, own,
                                        offset)
    except BusUnavailable:
        raise result_store_down() from None
    if reader.operator:
        return board
    assert reader.caller is not None
    return as_seen_by(board, reader.caller.subject, state.settings.sat.current)


class ReprocessRequest(BaseModel):
    """Either one stored event by id, or all events still marked failed."""

    model_config = ConfigDict(extra="forbid", strict=True)  # {"id": true} is not event 1
    id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    all: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> ReprocessRequest:
        if (self.id is None) == (not self.all):
            raise ValueError("give exactly one of id or all=true")
        return self


OperatorDep = Depends(operator_only)


@router.get("/v1/admin/failed-events", tags=["admin"], dependencies=[OperatorDep],
            responses=errors(401, 422))
async def failed_events(
    request: Request,
    status: Annotated[str, Query(pattern="^(failed|reprocessed|all)$")] = "failed",
    limit: Annotated[int, Query(ge=1, le=1000, description="Events per page.")] = 200,
    order: Annotated[str, Query(pattern="^(oldest|newest|reprocessed)$", description=(
        "`oldest` first (pages with `after_id`), `newest` first (pages with `before_id`), "
        "or `reprocessed`: with status=reprocessed, the `limit` reprocessed most recently, "
        "latest first (one page, no cursor)."))] = "oldest",
    after_id: Annotated[int | None, Query(ge=0, le=2**63 - 1, description=(
        "Oldest first: the `next` of the previous page, events with a larger id."))] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description=(
        "Newest first: the `next` of the previous page, events with a smaller id."))] = None,
) -> dict[str, Any]:
    """Completion events the scoreboard could not score, with their last error, a page at
    a time (reprocessed ones are kept: `all` grows with use); `next` is the cursor of the
    next page (null on the last)."""
    db = scoreboard_state(request).ctx.db
    if order == "reprocessed":
        for field, value in (("status", None if status == "reprocessed" else status),
                             ("after_id", after_id), ("before_id", before_id)):
            if value is not None:
                raise invalid_field(field, "order=reprocessed lists status=reprocessed, "
                                    "one page without a cursor")
        rows = await run_in_threadpool(list_last_reprocessed, db, limit)
        return {"events": [failed_event_dict(r) for r in rows], "next": None}
    newest = order == "newest"
    if (after_id if newest else before_id) is not None:
        field = "after_id" if newest else "before_id"
        raise invalid_field(field, f"does not page order={order}; use "
                                   f"{'before_id' if newest else 'after_id'}")
    wanted = None if status == "all" else status
    if newest:
        rows = await run_in_threadpool(partial(list_recent_events, before_id=before_id,
                                               limit=limit + 1), db, wanted)
    else:
        rows = await run_in_threadpool(partial(list_events, after_id=after_id or 0,
                                               limit=limit + 1), db, wanted)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"events": [failed_event_dict(r) for r in rows],
            "next": rows[-1].id if more else None}


@router.post("/v1/admin/failed-events/reprocess", tags=["admin"], dependencies=[OperatorDep],
             responses=errors(401, 404))
async def reprocess_events(body: ReprocessRequest, request: Request) -> dict[str, Any]:
    """Replay stored events through the scoring step; idempotent."""
    state = scoreboard_state(request)
    outcomes = await reprocess(state.scorer, state.ctx.db, state.publish_finalized,
                               event_id=body.id, all_failed=body.all)
    if body.id is not None and outcomes[0].status == "not_found":
        raise ForgeError("not_found", 404, f"failed event {body.id} not found")
    return {"results": [o.as_dict() for o in outcomes],
            "reprocessed": sum(1 for o in outcomes if o.ok),
            "failed": sum(1 for o in outcomes if not o.ok)}


@router.post("/v1/admin/nats/restart-subscriber", tags=["admin"], dependencies=[OperatorDep],
             responses=errors(401, 503))
async def restart_subscriber(request: Request) -> dict[str, Any]:
    """The runbook's "restart NATS subscriber": the completion consumer, and the LTI grade
    consumer where grade passback is configured."""
    consumer = scoreboard_state(request).consumer
    if consumer is None:
        raise ForgeError("unavailable", 503, "completion subscriber is not configured")
    grades = getattr(request.app.state, "lti_grades", None)
    consumers = [consumer] + ([grades.consumer] if grades is not None else [])
    # Together: each restart may wait out its handlers' grace and its connect.
    done = await asyncio.gather(*(c.restart() for c in consumers))
    results = {c.durable: ok for c, ok in zip(consumers, done, strict=True)}
    return {"restarted": results, "connected": all(results.values()),
            "status": dict(consumer.status())}
