"""What the instructor dashboard's pages and JSON share: the cohort's figures with the
scoreboard's scores, a learner's timeline with their recorded terminal sessions, and one
recording (issue 18 item 3).

The store decides what the instructor may see (`forge.classroom.scope`); the scoreboard is
asked only about those labs, with the operator token, in one request per 1,000 labs not
read in the last 10 minutes (``score_cache``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from forge.classroom import dashboard, timeline
from forge.classroom.cohorts import Manager
from forge.classroom.scope import lab_in_scope
from forge.errors import ForgeError
from forge.lifecycle import states
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.web.recordings import cast_download
from forge.services.spawn.web.state import web_state
from forge.store.finalized_audits import finalized_among
from forge_verify.recordings import RECORDING_NAME_RE

SUMMARY_BATCH = 1000  # the scoreboard's limit per request
LISTING_BATCH = 100  # labs per recording listing asked of the scoreboard (its limit)
MAX_DESCRIPTION = 200


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
    """The summaries of ``ids``: those read lately from the cache (``score_cache``), the
    others from the scoreboard."""
    web = web_state(request)
    found, missing = web.summaries.known(ids)
    for start in range(0, len(missing), SUMMARY_BATCH):
        asked = missing[start:start + SUMMARY_BATCH]
        body = await web.backend.scoreboard("POST", "/v1/admin/scores/summaries",
                                            json={"scenario_ids": asked})
        part = body.get("summaries") if isinstance(body, dict) else None
        if isinstance(part, dict):
            wanted = set(asked)  # what else an answer holds is not kept
            read = {k: v for k, v in part.items() if isinstance(v, dict) and k in wanted}
            web.summaries.keep(read)
            found.update(read)
    return found


def page_of(request: Request) -> dashboard.Page:
    """The page of learners the query asks for (`limit`, `after`, `status`; 422 naming
    the field)."""
    query = request.query_params
    return dashboard.check_page(query.getlist("limit"), query.getlist("after"),
                                query.getlist("status"))


async def cohort_data(request: Request, who: Manager, cohort_id: str
                      ) -> tuple[dashboard.CohortLabs, dict[str, Any]]:
    """What the store holds of a cohort `who` manages (404 for any other, 403 for a
    learner) and the scoreboard's summaries of every graded lab of it; a completed lab
    the scoreboard has no result of while the store records its verdict signed is `lost`
    (the instructor is told, not shown a learner who never handed in)."""
    db = spawn_state(request).ctx.db
    data = await run_in_threadpool(dashboard.cohort_labs, db, who, cohort_id,
                                   datetime.now(UTC))
    candidates = data.graded_candidates()
    scores = await _scores(request, candidates)
    unscored = [sid for sid in candidates if sid not in scores]
    for start in range(0, len(unscored), SUMMARY_BATCH):  # graded, but no result served
        data.lost |= await run_in_threadpool(finalized_among, db,
                                             unscored[start:start + SUMMARY_BATCH])
    return data, scores


async def cohort_figures(request: Request, who: Manager, cohort_id: str,
                         page: dashboard.Page | None = None) -> dict[str, Any]:
    """The dashboard of a cohort `who` manages (404 for any other, 403 for a learner):
    the learners of `page` (all without one). The totals per assignment are the whole
    cohort's, so the scoreboard is asked about every graded lab of the cohort."""
    data, scores = await cohort_data(request, who, cohort_id)
    # In a thread: at the caps (2,000 learners, 200 assignments) the figures take 0.3 s,
    # which on the event loop would stall every terminal and request of the service.
    return await run_in_threadpool(dashboard.figures, data, scores, who.tenant_id,
                                   _describer(request), page)


async def learner_timeline(request: Request, who: Manager, cohort_id: str, subject: str
                           ) -> dict[str, Any]:
    """A learner's timeline in a cohort `who` manages, each graded lab with the names and
    links of its terminal recordings."""
    db = spawn_state(request).ctx.db
    found = await run_in_threadpool(timeline.learner_timeline, db, who, cohort_id, subject)
    graded = [lab["scenario_id"] for lab in found["labs"] if lab["state"] == states.COMPLETED]
    listed: dict[str, list[str]] = {}
    for start in range(0, len(graded), LISTING_BATCH):
        listed.update(await _recording_names(request, who.tenant_id, subject,
                                             graded[start:start + LISTING_BATCH]))
    for lab in found["labs"]:
        sid = lab["scenario_id"]
        lab["recordings"] = [{"name": n, "url": f"/v1/cohorts/labs/{sid}/recordings/{n}"}
                             for n in listed.get(sid, [])]
    return found


async def _recording_names(request: Request, tenant_id: str, subject: str,
                           ids: list[str]) -> dict[str, list[str]]:
    """The recording names of one learner's graded labs ``ids``, in one scoreboard request
    scoped to that tenant and learner (a lab it does not list has none); an unreachable or
    failing scoreboard is its error (502), never "no recordings"."""
    body = await web_state(request).backend.scoreboard(
        "POST", "/v1/admin/scores/recordings",
        json={"tenant_id": tenant_id, "subject": subject, "scenario_ids": ids})
    part = body.get("recordings") if isinstance(body, dict) else None
    wanted = set(ids)
    return {sid: [str(r["name"]) for r in casts if isinstance(r, dict)
                  and RECORDING_NAME_RE.fullmatch(str(r.get("name", "")))]
            for sid, casts in (part.items() if isinstance(part, dict) else ())
            if sid in wanted and isinstance(casts, list)}


async def lab_cast(request: Request, who: Manager, scenario_id: str, name: str) -> Response:
    """One terminal recording of a lab `who` may look at, as a download (404 otherwise)."""
    if not RECORDING_NAME_RE.fullmatch(name):
        raise ForgeError("recording_not_found", 404, "name: no such recording",
                         [{"field": "name", "expected": "<host>.<n>.cast"}])
    db = spawn_state(request).ctx.db

    def scope() -> None:
        with db.read() as sess:
            lab_in_scope(sess, who, scenario_id)
    await run_in_threadpool(scope)
    return await cast_download(request, scenario_id, name)
