"""The lab page's tasks region: hints with their cost, revealed on demand (text only once
revealed), and "Check this task" on the running lab; shared by the web forms (`POST
/lab/{id}/hints/{hint}`, `POST /lab/{id}/checks/{criterion}`, CSRF-checked) and the JSON API
(`forge.services.spawn.hint_routes`).

A reveal is recorded in the store before its text leaves the service, so every hint a
learner has seen is charged in the score the scoreboard signs (`forge.grading.learner_aids`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.errors import ForgeError
from forge.grading.learner_aids import (
    HintFacts,
    begin_task_check,
    cancel_task_check,
    finish_task_check,
    hint_facts,
    parse_hint_id,
    reveal_hint,
    revealed,
    would_reveal,
)
from forge.lifecycle.store import ScenarioRow
from forge.services.spawn.assignment_gate import check_hints
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.routes import owned_scenario
from forge.services.spawn.web.backend import BackendError
from forge.services.spawn.web.errors import human_message, page_for, signin_url
from forge.services.spawn.web.render import page, render_markdown
from forge.services.spawn.web.result import check_reason
from forge.services.spawn.web.security import (
    check_csrf,
    check_same_origin,
    read_form,
    session_value,
)
from forge.services.spawn.web.state import web_state
from forge.services.spawn.web.viewer import viewer

router = APIRouter(include_in_schema=False)
# The node refused these before running anything, or ran them without a result (a stop of
# its service cut the checks short): such a run is forgotten, not counted (a lab busy or
# not running, one held by another node, an unknown lab or task, a token the node refused,
# the node stopping), and a call that never reached the node (no connection made). A
# timeout or a node that went away mid-call may have run it: that counts.
NOT_PERFORMED = frozenset({"lab_busy", "not_running", "lab_on_other_node", "not_found",
                           "unknown_criterion", "unauthorized", "checked_at_submit",
                           "service_stopping"})


def _texts(request: Request, row: ScenarioRow) -> tuple[tuple[HintFacts, ...], tuple[str, ...]]:
    """The lab template's hint facts and texts (none for a template no longer loaded)."""
    templates = web_state(request).templates
    if row.template_id not in templates:
        return (), ()
    spec = templates.get(row.template_id).template.spec
    return hint_facts(spec.hints), tuple(h.text for h in spec.hints)


def cost_label(cost: float) -> str:
    """How a cost reads on the page: "free" or "costs 10 % of the score"."""
    if cost <= 0:
        return "free"
    return f"costs {round(cost * 100, 1):g} % of the score"


async def hints_view(request: Request, row: ScenarioRow) -> list[dict[str, Any]]:
    """Every hint of the lab: id, criterion, cost, whether revealed and when; the text
    (markdown) only for revealed ones."""
    if not _texts(request, row)[0]:
        return []
    done = await run_in_threadpool(revealed, spawn_state(request).ctx.db, row.scenario_id)
    return hints_from(request, row, done)


def running_reveals(request: Request) -> Callable[[ScenarioRow], dict[int, datetime] | None]:
    """The read of a running lab's hint reveals (None for a lab not running or without
    hints), for `owned_scenario_and`: the lab page's poll takes them with its row."""
    db = spawn_state(request).ctx.db

    def read(row: ScenarioRow) -> dict[int, datetime] | None:
        if row.state != "running" or not _texts(request, row)[0]:
            return None
        return revealed(db, row.scenario_id)

    return read


def hints_from(request: Request, row: ScenarioRow,
               done: dict[int, datetime]) -> list[dict[str, Any]]:
    """`hints_view` from the reveals ``done`` already read (hint index -> when)."""
    facts, texts = _texts(request, row)
    view: list[dict[str, Any]] = []
    for h in facts:
        item: dict[str, Any] = {"id": h.id, "number": h.index + 1, "criterion": h.criterion,
                                "cost": h.cost, "cost_label": cost_label(h.cost),
                                "revealed": h.index in done,
                                "revealed_at": done[h.index].isoformat()
                                if h.index in done else None}
        if h.index in done:
            item["text"] = texts[h.index]
        view.append(item)
    return view


def hint_charge(hints: list[dict[str, Any]]) -> dict[str, Any]:
    """How many hints were revealed and what they cost together, in percent of the score;
    and which (their ids, never their texts): a lab page open in another tab turns their
    Reveal buttons say so and ask no cost again."""
    shown = [h for h in hints if h["revealed"]]
    return {"count": len(shown), "percent": f"{round(sum(h['cost'] for h in shown) * 100, 1):g}",
            "revealed": [h["id"] for h in shown]}


async def reveal_view(request: Request, scenario_id: str, hint: str) -> dict[str, Any]:
    """Record the reveal of one of the caller's hints, then return it with its text."""
    row = await owned_scenario(request, scenario_id)
    facts, texts = _texts(request, row)
    chosen = parse_hint_id(hint, facts)
    await check_hints(spawn_state(request), row.scenario_id)  # the assignment may forbid hints
    at = await run_in_threadpool(reveal_hint, spawn_state(request).ctx.db, row.scenario_id,
                                 row.tenant_id, chosen, facts)
    return {"id": chosen.id, "number": chosen.index + 1, "criterion": chosen.criterion,
            "cost": chosen.cost, "cost_label": cost_label(chosen.cost),
            "revealed_at": at.isoformat(), "text": texts[chosen.index]}


NOT_FINAL = ("A check, not a verdict: it grades nothing and changes no score; only Submit "
             "grades the lab.")


def _reason(check: dict[str, Any], index: int, count: int) -> str:
    """The result page's wording for one failed check (never its output or expected value)."""
    shaped = {"exit_code": check.get("exit_code"), "timed_out": check.get("timed_out"),
              "command": ["curl"] if check.get("network") is True else [],
              "stdout": {"truncated": check.get("truncated") is True}}
    reason = check_reason(shaped)
    return f"check {index + 1} of {count}: {reason}" if count > 1 else reason


async def check_view(request: Request, scenario_id: str, criterion: str) -> dict[str, Any]:
    """Run one task's checks on the caller's running lab (rate-limited, recorded) and say
    whether they pass now, with the result page's reasons; never a verdict."""
    row = await owned_scenario(request, scenario_id)
    templates = web_state(request).templates
    ids = [c.id for c in templates.get(row.template_id).template.spec.success_criteria] \
        if row.template_id in templates else []
    if criterion not in ids:
        raise ForgeError("unknown_criterion", 404, "criterion: this lab has no such task",
                         [{"field": "criterion", "allowed": ids}])
    db = spawn_state(request).ctx.db
    run_id = await run_in_threadpool(begin_task_check, db, row.scenario_id, row.tenant_id,
                                     criterion, web_state(request).check_limits)
    try:
        body = await web_state(request).backend.lab_node(
            row.node_id, row.node_url, "POST",
            f"/internal/scenarios/{row.scenario_id}/checks/{criterion}")
    except ForgeError as exc:
        if exc.code in NOT_PERFORMED or (isinstance(exc, BackendError) and exc.unsent):
            await run_in_threadpool(cancel_task_check, db, run_id)
        else:  # unknown whether it ran: it counts
            await run_in_threadpool(finish_task_check, db, run_id, None)
        raise
    checks = [c for c in body.get("checks") or [] if isinstance(c, dict)]
    passed = bool(checks) and all(c.get("passed") is True for c in checks)
    await run_in_threadpool(finish_task_check, db, run_id, passed)
    reasons: list[str] = []
    for i, check in enumerate(checks):
        if check.get("passed") is not True and (why := _reason(check, i, len(checks))) \
                not in reasons:
            reasons.append(why)
    return {"criterion": criterion, "passed": passed, "reasons": reasons, "final": False,
            "note": NOT_FINAL}


async def _form_post(request: Request, scenario_id: str,
                     action: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """A same-origin, CSRF-checked form post from the lab page, then `action`."""
    check_same_origin(request)
    form = await read_form(request)
    check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
    return await action()


async def _refusal(request: Request, exc: ForgeError, scenario_id: str,
                   wants_json: bool) -> Response:
    """The lab page's script gets JSON (with the sign-in page that leads back here when
    the learner is signed out); a press without script gets a page. Either says it in the
    learner's words: a lab node that did not answer read "orchestrator: unreachable
    (ConnectError)" under the task."""
    if wants_json:
        body = {"error": exc.code, "message": human_message(exc)}
        if exc.status == 401:  # signed out, or the session ran out
            body["signin"] = signin_url(f"/lab/{scenario_id}")
        elif exc.code == "check_too_soon":  # the API names the field; the page, the wait
            wait = (exc.headers or {}).get("Retry-After", "a few")
            body["message"] = f"This task was checked moments ago: check it again in {wait} s."
        return JSONResponse(body, status_code=exc.status,
                            headers={"Cache-Control": "no-store", **(exc.headers or {})})
    return await page_for(request, exc, f"/lab/{scenario_id}")


async def _unconfirmed_cost(request: Request, scenario_id: str, hint: str
                            ) -> dict[str, Any] | None:
    """The hint (number, cost label) when revealing it now would charge score: a press of
    the page without script asks before it charges. A reveal that would be refused is
    refused here with the same error (never a question asked in vain); a free or already
    revealed hint needs no question (None)."""
    row = await owned_scenario(request, scenario_id)
    facts, _ = _texts(request, row)
    chosen = parse_hint_id(hint, facts)
    if chosen.cost <= 0:
        return None
    state = spawn_state(request)
    await check_hints(state, row.scenario_id)  # the assignment may forbid hints
    if not await run_in_threadpool(would_reveal, state.ctx.db, row.scenario_id, row.tenant_id,
                                   chosen, facts):
        return None
    return {"id": chosen.id, "number": chosen.index + 1, "cost_label": cost_label(chosen.cost)}


@router.post("/lab/{scenario_id}/hints/{hint}")
async def web_reveal(scenario_id: str, hint: str, request: Request) -> Response:
    """The lab page's Reveal button: JSON for the page's script (which asks on the page
    before a hint that costs score), else back to the page; without script, a hint that
    costs score is revealed only from the confirmation page this answers first."""
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
        if not wants_json and form.get("confirm") != "yes":
            ask = await _unconfirmed_cost(request, scenario_id, hint)
            if ask is not None:
                return page("hint_confirm.html", {
                    "title": f"Reveal hint {ask['number']}?", "viewer": await viewer(request),
                    "scenario_id": scenario_id,
                    "hint": ask, "csrf": form.get("csrf", "")})
        body = await reveal_view(request, scenario_id, hint)
    except ForgeError as exc:
        return await _refusal(request, exc, scenario_id, wants_json)
    if wants_json:  # the text as safe HTML (markdown, raw HTML disabled) for the page,
        # and what every hint revealed so far costs (this tab may not know of another's)
        row = await owned_scenario(request, scenario_id)
        return JSONResponse({**body, "html": str(render_markdown(body["text"], top_heading=4)),
                             "charge": hint_charge(await hints_view(request, row))},
                            headers={"Cache-Control": "no-store"})
    return RedirectResponse(f"/lab/{scenario_id}#hint-{body['id']}", status_code=303)


@router.post("/lab/{scenario_id}/checks/{criterion}")
async def web_check(scenario_id: str, criterion: str, request: Request) -> Response:
    """The lab page's "Check this task" button: JSON for the script, else a small page."""
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        body = await _form_post(request, scenario_id,
                                lambda: check_view(request, scenario_id, criterion))
    except ForgeError as exc:
        return await _refusal(request, exc, scenario_id, wants_json)
    if wants_json:
        return JSONResponse(body, headers={"Cache-Control": "no-store"})
    return page("check_result.html", {"title": f"Check of task {criterion}",
                                      "viewer": await viewer(request),
                                      "scenario_id": scenario_id, "check": body})
