"""What the instructor dashboard's pages and JSON share: who is asking (with their role in
the tenant), the cohort's figures with the scoreboard's scores, a learner's timeline with
their recorded terminal sessions, and one recording (issue 18 item 3).

The store decides what the instructor may see (`forge.classroom.scope`); the scoreboard is
asked only about those labs, with the operator token, in one request per 1,000 labs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from forge.classroom import dashboard, timeline
from forge.classroom.cohorts import Manager
from forge.classroom.scope import check_scenario_id, lab_in_scope
from forge.errors import ForgeError
from forge.identity.caller import Caller
from forge.identity.roles import LEARNER, role_of
from forge.lifecycle import states
from forge.services.spawn.caller_deps import current_caller, spawn_state
from forge.services.spawn.web.backend import BackendError
from forge.services.spawn.web.state import web_state
from forge_verify.recordings import RECORDING_NAME_RE

SUMMARY_BATCH = 1000  # the scoreboard's limit per request
MAX_DESCRIPTION = 200


async def manager_of(request: Request, caller: Caller) -> Manager:
    """The caller with their role in their tenant (a lab's access link is a learner)."""
    role = LEARNER
    if caller.scenario_scope is None:
        role = await run_in_threadpool(role_of, spawn_state(request).ctx.db,
                                       caller.tenant_id, caller.subject)
    return Manager(caller.tenant_id, caller.subject, role)


async def api_manager(request: Request) -> Manager:
    """The API caller (key, session or receipt; 401 otherwise) as a Manager."""
    return await manager_of(request, await current_caller(request))


def _describer(request: Request) -> Callable[[str, str], str]:
    """A criterion's description (first line) from the lab's template, for "most failed"."""
    registry = web_state(request).templates

    def describe(template_id: str, criterion: str) -> str:
        if template_id not in registry:
            return ""
        for c in registry.get(template_id).template.spec.success_criteria:
            if c.id == criterion:
                return c.description.strip().splitlines()[0][:MAX_DESCRIPTION]
        return ""
    return describe


async def _scores(request: Request, ids: list[str]) -> dict[str, Any]:
    backend = web_state(request).backend
    found: dict[str, Any] = {}
    for start in range(0, len(ids), SUMMARY_BATCH):
        body = await backend.scoreboard("POST", "/v1/admin/scores/summaries",
                                        json={"scenario_ids": ids[start:start + SUMMARY_BATCH]})
        part = body.get("summaries") if isinstance(body, dict) else None
        if isinstance(part, dict):
            found.update({k: v for k, v in part.items() if isinstance(v, dict)})
    return found


async def cohort_figures(request: Request, who: Manager, cohort_id: str) -> dict[str, Any]:
    """The dashboard of a cohort `who` manages (404 for any other, 403 for a learner)."""
    db = spawn_state(request).ctx.db
    data = await run_in_threadpool(dashboard.cohort_labs, db, who, cohort_id,
                                   datetime.now(UTC))
    scores = await _scores(request, data.graded_candidates())
    return dashboard.figures(data, scores, who.tenant_id, _describer(request))


async def _recordings(request: Request, scenario_id: str) -> list[str]:
    try:
        body = await web_state(request).backend.scoreboard(
            "GET", f"/v1/scores/{scenario_id}/recordings")
    except BackendError:
        return []
    found = body.get("recordings") if isinstance(body, dict) else None
    return [str(r["name"]) for r in found or []
            if isinstance(r, dict) and RECORDING_NAME_RE.fullmatch(str(r.get("name", "")))]


async def learner_timeline(request: Request, who: Manager, cohort_id: str, subject: str
                           ) -> dict[str, Any]:
    """A learner's timeline in a cohort `who` manages, each graded lab with the names and
    links of its terminal recordings."""
    db = spawn_state(request).ctx.db
    found = await run_in_threadpool(timeline.learner_timeline, db, who, cohort_id, subject)
    graded = [lab for lab in found["labs"] if lab["state"] == states.COMPLETED]
    names = await asyncio.gather(*(_recordings(request, lab["scenario_id"]) for lab in graded))
    for lab in found["labs"]:
        lab["recordings"] = []
    for lab, listed in zip(graded, names, strict=True):
        lab["recordings"] = [
            {"name": n, "url": f"/v1/cohorts/labs/{lab['scenario_id']}/recordings/{n}"}
            for n in listed]
    return found


async def lab_cast(request: Request, who: Manager, scenario_id: str, name: str) -> bytes:
    """One terminal recording of a lab `who` may look at (404 otherwise)."""
    check_scenario_id(scenario_id)
    if not RECORDING_NAME_RE.fullmatch(name):
        raise ForgeError("recording_not_found", 404, "name: no such recording",
                         [{"field": "name", "expected": "<host>.<n>.cast"}])
    db = spawn_state(request).ctx.db

    def scope() -> None:
        with db.read() as sess:
            lab_in_scope(sess, who, scenario_id)
    await run_in_threadpool(scope)
    try:
        resp = await web_state(request).backend.scoreboard_raw(
            f"/v1/scores/{scenario_id}/recordings/{name}")
    except BackendError as exc:
        raise ForgeError("recording_unavailable", exc.status, exc.message) from None
    return resp.content
