"""The lab page's tasks region: hints with their cost, revealed on demand (text only once
revealed), shared by the web form (`POST /lab/{id}/hints/{hint}`, CSRF-checked) and the JSON
API (`forge.services.spawn.hint_routes`).

A reveal is recorded in the store before its text leaves the service, so every hint a
learner has seen is charged in the score the scoreboard signs (`forge.grading.learner_aids`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.errors import ForgeError
from forge.grading.learner_aids import (
    HintFacts,
    hint_facts,
    parse_hint_id,
    reveal_hint,
    revealed,
)
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.routes import owned_scenario
from forge.services.spawn.web.render import error_page, render_markdown
from forge.services.spawn.web.security import (
    check_csrf,
    check_same_origin,
    read_form,
    session_value,
)
from forge.services.spawn.web.state import web_state
from forge.store.models import Scenario

router = APIRouter(include_in_schema=False)


def _texts(request: Request, row: Scenario) -> tuple[tuple[HintFacts, ...], tuple[str, ...]]:
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


async def hints_view(request: Request, row: Scenario) -> list[dict[str, Any]]:
    """Every hint of the lab: id, criterion, cost, whether revealed and when; the text
    (markdown) only for revealed ones."""
    facts, texts = _texts(request, row)
    if not facts:
        return []
    done = await run_in_threadpool(revealed, spawn_state(request).ctx.db, row.scenario_id)
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
    """How many hints were revealed and what they cost together, in percent of the score."""
    costs = [h["cost"] for h in hints if h["revealed"]]
    return {"count": len(costs), "percent": f"{round(sum(costs) * 100, 1):g}"}


async def reveal_view(request: Request, scenario_id: str, hint: str) -> dict[str, Any]:
    """Record the reveal of one of the caller's hints, then return it with its text."""
    row = await owned_scenario(request, scenario_id)
    facts, texts = _texts(request, row)
    chosen = parse_hint_id(hint, facts)
    at = await run_in_threadpool(reveal_hint, spawn_state(request).ctx.db, row.scenario_id,
                                 row.tenant_id, chosen, facts)
    return {"id": chosen.id, "number": chosen.index + 1, "criterion": chosen.criterion,
            "cost": chosen.cost, "cost_label": cost_label(chosen.cost),
            "revealed_at": at.isoformat(), "text": texts[chosen.index]}



@router.post("/lab/{scenario_id}/hints/{hint}")
async def web_reveal(scenario_id: str, hint: str, request: Request) -> Response:
    """The lab page's Reveal button: JSON for the page's script, else back to the page."""
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
        body = await reveal_view(request, scenario_id, hint)
    except ForgeError as exc:
        if wants_json:
            return JSONResponse({"error": exc.code, "message": exc.message},
                                status_code=exc.status, headers={"Cache-Control": "no-store"})
        return error_page(exc.status, exc.message, back=f"/lab/{scenario_id}")
    if wants_json:  # the text as safe HTML (markdown, raw HTML disabled) for the page
        return JSONResponse({**body, "html": str(render_markdown(body["text"]))},
                            headers={"Cache-Control": "no-store"})
    return RedirectResponse(f"/lab/{scenario_id}#hint-{body['id']}", status_code=303)
