"""JSON API for hints and task checks: list a lab's hints (text only once revealed), reveal
one, and check one task on the running lab (rate-limited, recorded, not a verdict).

The logic is the lab page's (`forge.services.spawn.web.tasks`); these routes only expose it
to API clients (the caller's own labs, 404 for anyone else's).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from forge.services.common.openapi import errors
from forge.services.spawn.routes import owned_scenario
from forge.services.spawn.web.backend import BackendError
from forge.services.spawn.web.tasks import check_view, hints_view, reveal_view

router = APIRouter(tags=["learner"])


@router.get("/v1/scenarios/{scenario_id}/hints", responses=errors(401, 404))
async def list_hints(scenario_id: str, request: Request) -> dict[str, Any]:
    """The lab's hints with their cost; texts of revealed hints only."""
    row = await owned_scenario(request, scenario_id)
    return {"scenario_id": row.scenario_id, "hints": await hints_view(request, row)}


@router.post("/v1/scenarios/{scenario_id}/hints/{hint}",
             responses=errors(401, 403, 404, 409))
async def post_reveal(scenario_id: str, hint: str, request: Request) -> dict[str, Any]:
    """Reveal a hint (`h1`, `h2`, …; in order per task, only while the lab runs). Its cost
    is subtracted from the final score; revealing it again changes nothing. With a session
    cookie only from a page of this site (403 otherwise)."""
    return await reveal_view(request, scenario_id, hint)


@router.post("/v1/scenarios/{scenario_id}/checks/{criterion}",
             responses=errors(401, 403, 404, 409, 429, 503))
async def post_check(scenario_id: str, criterion: str, request: Request) -> dict[str, Any]:
    """Run one task's checks on the running lab now: passed or not, with the result page's
    reasons (never output or expected values). Not a verdict: nothing is graded. At most one
    check per task every 20 s and 30 per lab (429 with Retry-After); each run is recorded
    and listed in the evidence. With a session cookie only from a page of this site.
    A refusal of the lab's node (409 `checked_at_submit`, `lab_busy`…) is passed on whole,
    in the API's terms (its details, no internal service name)."""
    try:
        return await check_view(request, scenario_id, criterion)
    except BackendError as exc:
        raise exc.relayed() from None
