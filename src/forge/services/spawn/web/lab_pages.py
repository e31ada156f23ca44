"""Learner lab pages: the lab (task, hosts, timer, terminal, submit, extend), its result
and result files. Picking a lab is `track_pages`.

Server-rendered; every form POST is same-origin and CSRF-checked; the only JavaScript is
static files (status polling, countdown, terminal). Scenario pages are owner-only (404 else).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.bus.subjects import DURABLE_SCOREBOARD_COMPLETED as SCOREBOARD_CONSUMER
from forge.classroom.assignments import scenario_assignment
from forge.errors import ForgeError
from forge.grading.watched_checks import checkable, seeded_scripts
from forge.lifecycle.store import ScenarioRow
from forge.lifecycle.visibility import learner_view
from forge.services.spawn import routes as spawn_routes
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.catalog_entry import CatalogEntry
from forge.services.spawn.web.backend import BackendError
from forge.services.spawn.web.credential import credential_offer
from forge.services.spawn.web.errors import as_page
from forge.services.spawn.web.lab_heading import lab_name, lab_page_title
from forge.services.spawn.web.recordings import recording_names, with_player
from forge.services.spawn.web.render import page, render_markdown
from forge.services.spawn.web.result import VERIFY_STANDALONE, result_view
from forge.services.spawn.web.security import (
    check_csrf,
    check_same_origin,
    csrf_token,
    read_form,
    security_headers,
    session_value,
)
from forge.services.spawn.web.state import ARTIFACT_NAMES, web_state
from forge.services.spawn.web.tasks import hint_charge, hints_from, hints_view, running_reveals
from forge.services.spawn.web.viewer import viewer
from forge.store.failed_events import has_failed_event
from forge.store.timestamps import aware

router = APIRouter(include_in_schema=False)
EXTEND_WINDOW = timedelta(minutes=10)
FINISHED = ("completed", "failed", "expired", "deleted")
SUBMIT_SETTLE_STEPS = 30


def _remaining_s(row: ScenarioRow) -> int | None:
    if row.expires_at is None:
        return None
    expires = aware(row.expires_at)
    return max(0, int((expires - datetime.now(UTC)).total_seconds()))


# The scoreboard's 404 for a lab graded whose result it no longer has, in a learner's words
# (its own message is for the operator).
GONE_NOTES = {
    "results_missing": "Your lab was graded, but its signed result is missing on the "
                       "server (lost when the platform was restored from a backup), not "
                       "because of your work. Your operator can bring it back from a later "
                       "copy; it appears here then.",
    "results_expired": "Your lab was graded, but its result has been removed: results are "
                       "kept for a limited time on this platform.",
}


class ResultGone(Exception):
    """The lab was graded but its result is no longer kept: `note` says so."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


async def _result(request: Request, row: ScenarioRow) -> dict[str, Any] | None:
    """The scoreboard's score and verification, once the verdict exists (None before);
    ResultGone when it was graded but the result is no longer kept ("waiting for the
    signed verdict" would wait for ever)."""
    if row.state != "completed":
        return None
    try:
        body: dict[str, Any] = await web_state(request).backend.scoreboard(
            "GET", f"/v1/scores/{row.scenario_id}")
    except BackendError as exc:
        if exc.status == 404 and exc.code in GONE_NOTES:
            raise ResultGone(GONE_NOTES[exc.code]) from None
        if exc.status == 404:
            return None
        raise
    return body


REFUSED_NOTE = ("Your lab was graded, but the platform could not record its signed result "
                "(a fault on the server, not in your work). Your operator has been told and "
                "can record it again; it appears here then.")


async def _verdict_refused(request: Request, row: ScenarioRow) -> bool:
    """Whether the scoreboard gave up on this completed lab's verdict (kept as a failed
    event for the operator to reprocess, e.g. after a secret rotation): the page says so
    instead of "waiting for the signed verdict" for ever."""
    if row.state != "completed":
        return False
    return await run_in_threadpool(has_failed_event, spawn_state(request).ctx.db,
                                   SCOREBOARD_CONSUMER, row.scenario_id)


async def _score_ready(request: Request, row: ScenarioRow) -> bool:
    """Whether the verdict is in, from its score.json alone (the scoreboard's summary of a
    lab already known to be the caller's): a poll never makes the scoreboard read and
    verify an evidence bundle of up to 256 MiB, as showing the result does."""
    if row.state != "completed":
        return False
    body = await web_state(request).backend.scoreboard(
        "POST", "/v1/admin/scores/summaries", json={"scenario_ids": [row.scenario_id]})
    found = body.get("summaries") if isinstance(body, dict) else None
    return isinstance(found, dict) and row.scenario_id in found


SLOW_START_S = 60  # a lab still starting after this long: the page says it is slow


def _waited_s(row: ScenarioRow) -> int:
    """Seconds since the lab was asked for (the page counts on from there, so a learner's
    own clock being off does not matter)."""
    return max(0, int((datetime.now(UTC) - aware(row.created_at)).total_seconds()))


def _expires_iso(row: ScenarioRow) -> str:
    if row.expires_at is None:
        return ""
    expires = aware(row.expires_at)
    return expires.isoformat()


@router.get("/lab/{scenario_id}")
async def lab_page(scenario_id: str, request: Request) -> Response:
    """The lab: task, hosts, time left, terminal, submit; after grading the verdict."""
    async def run() -> Response:
        row = await spawn_routes.owned_scenario(request, scenario_id)
        web = web_state(request)
        description, tasks = "", []
        if row.template_id in web.templates:
            template = web.templates.get(row.template_id).template
            spec = template.spec
            description = spec.description
            shells = web.templates.learner_hosts(row.template_id)
            scripts = seeded_scripts(template)
            # A task Submit alone checks (its check could be watched, or its answer is
            # one of a few candidates) offers no button.
            tasks = [{"id": c.id, "description": c.description,
                      "checkable": checkable(c, shells, scripts)}
                     for c in spec.success_criteria]
        hints = await hints_view(request, row)  # texts of revealed hints only
        # Started for a class's assignment whose hints are off: no Reveal button that can
        # only be refused (the reveal route refuses it all the same).
        hints_off = row.state == "running" and await _hints_off(request, row.scenario_id)
        for h in hints:
            if "text" in h:
                h["html"] = render_markdown(h["text"], top_heading=4)  # under Hints (h3)
        remaining = _remaining_s(row)
        gone: str | None = None
        try:
            result = await _result(request, row)
        except ResultGone as exc:
            result, gone = None, exc.note
        refused = result is None and not gone and await _verdict_refused(request, row)
        settings = spawn_state(request).settings
        terminal_hosts = spawn_routes.learner_hosts(spawn_state(request), row)
        hosts, other_hosts = learner_view(row.details.get("hosts", {}), terminal_hosts)
        entry = _catalog_entry(request, row)
        shown = _result_context(row, result, entry)
        return page("lab.html", {
            "title": lab_page_title(shown["view"], lab_name(entry, row), row), "row": row,
            "lab_title": lab_name(entry, row),
            "task": render_markdown(description, top_heading=3) if description else None,
            "hints": hints if row.state == "running" and not hints_off
            else [h for h in hints if h["revealed"]],
            "hints_off": hints_off,
            "hint_charge": hint_charge(hints), "tasks": tasks,
            "hosts": hosts, "other_hosts": other_hosts, "terminal_hosts": terminal_hosts,
            "remaining": remaining,
            "expires_iso": _expires_iso(row),
            "waited_s": _waited_s(row), "slow_after_s": SLOW_START_S,
            "extend_open": row.state == "running" and remaining is not None
            and remaining <= EXTEND_WINDOW.total_seconds(),
            "extend": _extend_facts(request, row),
            "viewer": await viewer(request),
            "finished": row.state in FINISHED,
            "verdict_refused": REFUSED_NOTE if refused else gone,
            "csrf": csrf_token(settings, session_value(request) or ""),
            **shown,
        }, terminal=row.state == "running")
    return await as_page("/tracks", request)(run)


async def _hints_off(request: Request, scenario_id: str) -> bool:
    """Whether the lab was started for an assignment that allows no hints."""
    found = await run_in_threadpool(scenario_assignment, spawn_state(request).ctx.db,
                                    scenario_id)
    return found is not None and not found.hints_allowed


EXTEND_STEP_MIN = 15


def _extend_facts(request: Request, row: ScenarioRow) -> dict[str, Any]:
    """What the Extend block says: the step, the plan's maximum, when it opens, and whether
    the maximum is reached (the orchestrator enforces the same rules)."""
    plan = spawn_state(request).catalog.get(row.plan)
    max_min = plan.max_lab_minutes if plan is not None else 60
    facts: dict[str, Any] = {"step": EXTEND_STEP_MIN, "max_minutes": max_min,
                             "opens_iso": "", "at_cap": False}
    if row.expires_at is not None:
        expires = aware(row.expires_at)
        facts["opens_iso"] = (expires - EXTEND_WINDOW).isoformat()
        facts["at_cap"] = expires >= aware(row.created_at) + timedelta(minutes=max_min)
    return facts


def _catalog_entry(request: Request, row: ScenarioRow) -> CatalogEntry | None:
    """The lab's catalog entry (its title, its name to start it again); None for a template
    no longer loaded."""
    facts = spawn_state(request).templates.get(row.template_id)
    return facts.entry if facts is not None else None


def _result_context(row: ScenarioRow, result: dict[str, Any] | None,
                    entry: CatalogEntry | None) -> dict[str, Any]:
    """What result_section.html needs: the worded result, downloads, verify command, and
    the lab to start again."""
    names = [n for n in (result or {}).get("artifacts", []) if n in ARTIFACT_NAMES]
    return {
        "lab": entry.lab if entry is not None else None,
        "view": result_view(result) if result is not None else None,
        "scenario_id": row.scenario_id, "artifact_names": names,
        "bundle_name": next((n for n in names if n.startswith("evidence")), "evidence.tar.zst"),
        "verifier_dist": VERIFY_STANDALONE,
        "credential": credential_offer(result, row.tenant_id, row.subject),
    }


@router.get("/lab/{scenario_id}/result")
async def lab_result(scenario_id: str, request: Request) -> Response:
    """The graded result on its own page: a stable link for its owner, also after the lab."""
    async def run() -> Response:
        row = await spawn_routes.owned_scenario(request, scenario_id)
        try:
            result = await _result(request, row)
        except ResultGone as exc:
            raise ForgeError("result_gone", 404, exc.note) from None
        if result is None and await _verdict_refused(request, row):
            raise ForgeError("result_held", 503, REFUSED_NOTE)
        if result is None:
            raise ForgeError("result_not_ready", 404,
                             "This lab has no result yet: it appears here once it is graded.")
        entry = _catalog_entry(request, row)
        return with_player(page("result.html", {
            "title": f"Result: {lab_name(entry, row)}", "track": row.track,
            "lab_title": lab_name(entry, row),
            "viewer": await viewer(request),
            **_result_context(row, result, entry),
            "recordings": await recording_names(request, row.scenario_id),
        }))
    return await as_page(f"/lab/{scenario_id}", request)(run)


@router.get("/lab/{scenario_id}/status")
async def lab_status(scenario_id: str, request: Request) -> JSONResponse:
    """What the lab page polls: state, deadline, whether the verdict is in, and (while the
    lab runs) what the hints revealed so far cost: revealed in another tab or device, the
    Submit dialog of this one would otherwise say fewer."""
    row, done = await spawn_routes.owned_scenario_and(request, scenario_id,
                                                      running_reveals(request))
    try:
        score_ready = await _score_ready(request, row)
    except BackendError:
        score_ready = False
    body: dict[str, Any] = {"state": row.state, "reason": row.state_reason,
                            "expires_at": _expires_iso(row), "remaining_s": _remaining_s(row),
                            "score_ready": score_ready}
    if row.state == "running":
        body["hints"] = hint_charge(hints_from(request, row, done or {}))
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/lab/{scenario_id}/submit")
async def lab_submit(scenario_id: str, request: Request) -> Response:
    """Hand the lab in for grading, once confirmed (the page's dialog, or without script a
    confirmation page saying what ends)."""
    async def run() -> Response:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
        row = await spawn_routes.owned_scenario(request, scenario_id)
        if row.state != "running":
            # Already handed in (a second click, a resent form, a tab left open) or ended:
            # the lab's page shows where it is and its result, not a refusal.
            return RedirectResponse(f"/lab/{scenario_id}", status_code=303)
        if form.get("confirm") != "yes":
            return page("submit_confirm.html", {
                "title": "Submit this lab?", "viewer": await viewer(request), "row": row,
                "csrf": form.get("csrf", ""),
                "hint_charge": hint_charge(await hints_view(request, row))})
        try:
            await spawn_routes.submit(scenario_id, request)
        except ForgeError as exc:
            if exc.code != "not_running":  # it ended between the read above and this submit
                raise
            return RedirectResponse(f"/lab/{scenario_id}", status_code=303)
        # Grading starts within moments; showing the page after that avoids opening a terminal
        # on a lab that is already being graded. The page follows the state by itself anyway.
        for _ in range(SUBMIT_SETTLE_STEPS):
            row = await spawn_routes.owned_scenario(request, scenario_id)
            if row.state != "running":
                break
            await asyncio.sleep(0.1)
        return RedirectResponse(f"/lab/{scenario_id}", status_code=303)
    return await as_page(f"/lab/{scenario_id}", request)(run)


@router.post("/lab/{scenario_id}/extend")
async def lab_extend(scenario_id: str, request: Request) -> Response:
    """More time (the orchestrator allows it only in the last 10 minutes, within the plan)."""
    async def run() -> Response:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
        row = await spawn_routes.owned_scenario(request, scenario_id)
        raw = form.get("minutes", "15")
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 60:
            raise ForgeError("invalid_minutes", 400, "minutes: a whole number from 1 to 60")
        await web_state(request).backend.lab_node(
            row.node_id, row.node_url, "POST", f"/v1/scenarios/{row.scenario_id}/extend",
            json={"minutes": int(raw)})
        # "#extended": the page says it was, where the learner pressed (lab.js)
        return RedirectResponse(f"/lab/{scenario_id}#extended", status_code=303)
    return await as_page(f"/lab/{scenario_id}", request)(run)


@router.get("/lab/{scenario_id}/artifacts/{name}")
async def lab_artifact(scenario_id: str, name: str, request: Request) -> Response:
    """Download one of the four result files of the learner's own lab."""
    if name not in ARTIFACT_NAMES:
        raise ForgeError("not_found", 404, "name: no such result file; one of "
                         + ", ".join(sorted(ARTIFACT_NAMES)),
                         [{"field": "name", "allowed": sorted(ARTIFACT_NAMES)}])
    row = await spawn_routes.owned_scenario(request, scenario_id)
    try:
        resp = await web_state(request).backend.scoreboard_raw(
            f"/v1/scores/{row.scenario_id}/artifacts/{name}")
    except BackendError as exc:
        raise ForgeError("artifact_unavailable", exc.status, exc.message) from None
    headers = security_headers()
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(resp.content, media_type=ARTIFACT_NAMES[name], headers=headers)
