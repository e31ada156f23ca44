"""The instructor dashboard's pages under /teach (issue 18 item 3): a cohort's figures per
assignment and learner with a CSV download, a learner's timeline with their recorded
terminal sessions (played by the vendored asciinema-player), and those recordings.

Server-rendered like the other pages; the scope rules are the JSON API's
(`dashboard_data`): 404 for a cohort, learner or lab outside the instructor's cohorts, 403
for a learner, a sign-in redirect for nobody.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from forge.classroom.cohorts import Manager
from forge.classroom.dashboard import STARTED, STATUSES
from forge.errors import ForgeError
from forge.services.spawn.caller_deps import manager_of
from forge.services.spawn.web.dashboard_api import csv_response
from forge.services.spawn.web.dashboard_data import (
    cohort_figures,
    lab_cast,
    learner_timeline,
    page_of,
)
from forge.services.spawn.web.errors import page_for, signin_url
from forge.services.spawn.web.recordings import with_player
from forge.services.spawn.web.render import page
from forge.services.spawn.web.viewer import signed_in, viewer

router = APIRouter(include_in_schema=False)


async def _as_manager(request: Request, back: str,
                      run: Callable[[Manager], Awaitable[Response]]) -> Response:
    """Run `run` for the signed-in person (else sign in first); errors become pages."""
    caller = await signed_in(request)
    if caller is None:
        return RedirectResponse(signin_url(request.url.path), status_code=303)
    try:
        return await run(await manager_of(request, caller))
    except ForgeError as exc:
        return await page_for(request, exc, back)


def _minutes(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _page_url(cohort_id: str, limit: int, after: str | None = None,
              status: str | None = None) -> str:
    """The link to a page of the dashboard, with this page's `limit` and `status` filter
    (escaped in the URL here, in the HTML by the template)."""
    query = urlencode({"limit": limit, **({"status": status} if status else {}),
                       **({"after": after} if after else {})})
    return f"/teach/cohorts/{quote(cohort_id, safe='')}?{query}"


def _filters(cohort_id: str, limit: int) -> list[tuple[str, str, str | None]]:
    """The page's filter links: (label, URL, status) for every learner and each status."""
    return [("Everyone", _page_url(cohort_id, limit), None),
            *((f"{status[:1].upper()}{status[1:]}" + (" (no result yet)"
               if status == STARTED else ""), _page_url(cohort_id, limit, status=status),
               status) for status in STATUSES)]


@router.get("/teach/cohorts/{cohort_id}")
async def dashboard_page(cohort_id: str, request: Request) -> Response:
    """A cohort's dashboard: per assignment its totals (the whole cohort's) and one row
    per learner of the page asked for (`limit`, `after` as the JSON API's)."""
    async def run(who: Manager) -> Response:
        shown = page_of(request)
        figures = await cohort_figures(request, who, cohort_id, shown)
        return page("dashboard.html", {
            "title": f"Dashboard: {figures['name']}", "viewer": await viewer(request),
            "d": figures, "minutes": _minutes, "filters": _filters(cohort_id, shown.limit),
            "first_url": _page_url(cohort_id, shown.limit, status=shown.status)
            if shown.after else None,
            "next_url": _page_url(cohort_id, shown.limit, figures["next"], shown.status)
            if figures["next"] else None})
    return await _as_manager(request, "/teach", run)


@router.get("/teach/cohorts/{cohort_id}/dashboard.csv")
async def dashboard_csv_page(cohort_id: str, request: Request) -> Response:
    """The dashboard as CSV, for the signed-in instructor."""
    async def run(who: Manager) -> Response:
        return await csv_response(request, who, cohort_id)
    return await _as_manager(request, "/teach", run)


@router.get("/teach/cohorts/{cohort_id}/learners/{subject}")
async def learner_page(cohort_id: str, subject: str, request: Request) -> Response:
    """A learner's timeline in the cohort, with their terminal recordings."""
    async def run(who: Manager) -> Response:
        found = await learner_timeline(request, who, cohort_id, subject)
        played = any(lab["recordings"] for lab in found["labs"])
        shown = page("learner_timeline.html", {
            "title": f"{found['subject']} in {found['cohort']}", "viewer": await viewer(request),
            "t": found, "played": played})
        return with_player(shown) if played else shown
    return await _as_manager(request, f"/teach/cohorts/{quote(cohort_id[:40])}", run)


@router.get("/teach/labs/{scenario_id}/recordings/{name}")
async def recording(scenario_id: str, name: str, request: Request) -> Response:
    """One terminal recording of a learner's lab in a cohort the instructor manages."""
    async def run(who: Manager) -> Response:
        return await lab_cast(request, who, scenario_id, name)
    return await _as_manager(request, "/teach", run)
