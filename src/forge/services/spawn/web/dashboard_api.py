"""JSON and CSV of the instructor dashboard (issue 18 item 3), for API callers (an API key,
the session cookie or a receipt): a cohort's figures, their CSV export and a learner's
timeline. Instructors see only the cohorts they manage (404 for any other, of their tenant
or another), operators every cohort of their tenant, learners none (403).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from forge.classroom import dashboard
from forge.classroom.cohorts import Manager
from forge.classroom.dashboard_csv import csv_chunks
from forge.services.common.openapi import errors
from forge.services.spawn.caller_deps import current_manager
from forge.services.spawn.web.dashboard_data import (
    cohort_data,
    cohort_figures,
    lab_cast,
    learner_timeline,
    page_of,
)
from forge.services.spawn.web.security import security_headers

router = APIRouter(tags=["classroom"])


_NOT_WORD = re.compile(r"[^a-z0-9]+")


def download_name(name: str, cohort_id: str) -> str:
    """The CSV's file name: the class's name in ASCII letters and digits (accents dropped,
    anything else one dash, at most 60 characters), then its id, which keeps two classes
    of one name apart; the id alone when the name has no such letter. An instructor of
    24 classes finds each download by its class, and nothing of a name a teacher typed
    (quotes, line breaks, slashes) reaches the header."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _NOT_WORD.sub("-", ascii_name.lower()).strip("-")[:60].rstrip("-")
    return f"{slug}-{cohort_id}.csv" if slug else f"{cohort_id}.csv"


async def csv_response(request: Request, who: Manager, cohort_id: str) -> Response:
    """The dashboard of a cohort `who` manages as a CSV download named after its class
    (`download_name`), with a byte-order mark: Excel reads a CSV without one in the
    machine's legacy code page, garbling names. Streamed a page of learners at a time
    (`csv_chunks`), each piece written in a thread: at the caps the whole is 40 MB and 6 s
    of work, which built at once held it all in memory and, on the event loop, froze every
    learner's terminal for as long. Refusals (404, 403) come before the first byte."""
    data, scores = await cohort_data(request, who, cohort_id)
    headers = security_headers()
    name = download_name(data.name, data.cohort_id)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    # A plain iterator: Starlette runs each step in its thread pool, off the event loop.
    return StreamingResponse(csv_chunks(data, scores, who.tenant_id),
                             media_type="text/csv; charset=utf-8", headers=headers)


# Read by `page_of` (one parser for this route and the page, 422 naming the field),
# documented here.
_PAGE_PARAMETERS = {"parameters": [
    {"name": "limit", "in": "query", "required": False,
     "description": f"Learners per page, 1-{dashboard.MAX_PAGE} "
                    f"(default {dashboard.DEFAULT_PAGE}); 422 otherwise.",
     "schema": {"type": "integer", "minimum": 1, "maximum": dashboard.MAX_PAGE,
                "default": dashboard.DEFAULT_PAGE}},
    {"name": "after", "in": "query", "required": False,
     "description": "The page's learners come after this account id (by subject): the "
                    "`next` of the previous page. 422 for anything but an account id.",
     "schema": {"type": "string", "minLength": 1, "maxLength": 128,
                "pattern": r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"}},
    {"name": "status", "in": "query", "required": False,
     "description": "Only learners with this status in at least one assignment (`started`: "
                    "began a lab and has no result yet); `matching_learners` counts them. "
                    "422 for any other value.",
     "schema": {"type": "string", "enum": list(dashboard.STATUSES)}},
]}


@router.get("/v1/cohorts/{cohort_id}/dashboard", responses=errors(401, 403, 404, 422, 502),
            openapi_extra=_PAGE_PARAMETERS)
async def cohort_dashboard(cohort_id: str, request: Request) -> dict[str, Any]:
    """Per assignment of the cohort: learners, who started and finished, mean score, median
    time spent, hints used, the criteria most often failed (over the whole cohort); and one
    row per learner of this page (status, attempts, best score, time spent, hints, failed
    criteria), by subject. `next` is the `after` of the next page (null on the last);
    `total_learners` counts the whole cohort."""
    who = await current_manager(request)
    page = page_of(request)
    return await cohort_figures(request, who, cohort_id, page)


@router.get("/v1/cohorts/{cohort_id}/dashboard.csv", responses=errors(401, 403, 404, 422, 502))
async def cohort_dashboard_csv(cohort_id: str, request: Request) -> Response:
    """The dashboard's rows as CSV, every learner of the cohort (one line per learner and
    assignment; cells that a spreadsheet would read as a formula are prefixed with an
    apostrophe)."""
    who = await current_manager(request)
    return await csv_response(request, who, cohort_id)


@router.get("/v1/cohorts/{cohort_id}/learners/{subject}/timeline",
            responses=errors(401, 403, 404, 422, 502))
async def cohort_learner_timeline(cohort_id: str, subject: str, request: Request
                                  ) -> dict[str, Any]:
    """A learner's labs for the cohort's assignments: state changes, submissions, task
    checks and hints in time order, and the links of their terminal recordings."""
    who = await current_manager(request)
    return await learner_timeline(request, who, cohort_id, subject)


@router.get("/v1/cohorts/labs/{scenario_id}/recordings/{name}",
            responses=errors(401, 403, 404, 422, 502))
async def cohort_lab_recording(scenario_id: str, name: str, request: Request) -> Response:
    """One terminal recording of a learner's lab in a cohort you manage."""
    who = await current_manager(request)
    return await lab_cast(request, who, scenario_id, name)
