"""The lab terminal: a WebSocket onto a lab host's terminal (the runtime engine's async byte
stream), for spawn_service's proxy only.

Authorization is a 60-second TTY token minted by spawn_service for one scenario, subject and
host; the host must be one the lab's template marks `access: learner` (terminal_access).
Binary frames carry terminal bytes both ways; a text frame
`{"type": "resize", "rows": R, "cols": C}` resizes the PTY. A lab has at most its plan's
`max_terminals` open at once (all tabs and devices together); a terminal without input for
the plan's `terminal_idle_seconds` is closed; `close_terminals` closes every terminal of a lab
when its grading starts and refuses new ones from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from forge.lifecycle import states
from forge.lifecycle.store import ScenarioNotFound, load
from forge.plans import DEFAULT_MAX_TERMINALS, DEFAULT_TERMINAL_IDLE_SECONDS
from forge.runtime.base import RuntimeFault
from forge.runtime.recording import recorded_tty
from forge.services.common.relay import until_first_ends
from forge.services.orchestrator.state import OrchestratorState
from forge.services.orchestrator.terminal_access import host_refusal
from forge.services.orchestrator.terminal_io import (
    Activity,
    Keystrokes,
    pump_in,
    pump_out,
)
from forge.services.orchestrator.terminal_slots import (
    Closing,
    SlotRefused,
    TerminalSlot,
    idle_timeout,
    not_running,
    sealed,
)
from forge.tokens import TERMINAL, TokenError, verify_token

router = APIRouter()
log = logging.getLogger("forge.orchestrator.terminal")
TOKEN_HEADER = "x-forge-terminal"  # noqa: S105 - a header name, not a secret


async def _watch(slot: TerminalSlot, activity: Activity, idle_s: int) -> None:
    """Return when the slot is asked to close, or after `idle_s` without input (asking it)."""
    loop = asyncio.get_running_loop()
    while not slot.stop.is_set():
        remaining = activity.last + idle_s - loop.time()
        if remaining <= 0:
            slot.ask_to_close(idle_timeout(idle_s))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slot.stop.wait(), remaining)


async def _send_closing(ws: WebSocket, closing: Closing) -> None:
    """Tell the client why (a JSON text frame, then the close code and reason); it may be gone."""
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await ws.send_text(json.dumps(closing.body()))
        await ws.close(code=closing.code, reason=closing.reason())


async def _refuse(ws: WebSocket, closing: Closing) -> None:
    """Accept only to say why not: a refusal the page can show, not a bare failed handshake."""
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await ws.accept()
        await _send_closing(ws, closing)


def _size(ws: WebSocket, name: str, default: int, most: int) -> int:
    raw = ws.query_params.get(name, "")
    ok = raw.isascii() and raw.isdigit() and len(raw) <= 6
    return max(1, min(int(raw), most)) if ok else default


async def close_terminals(state: OrchestratorState, scenario_id: str, reason: str,
                          wait_s: float = 10.0) -> int:
    """Close every terminal of the lab and refuse new ones from now on (grading starts).

    Each open terminal gets a ``lab_sealed`` message and close code 4410; this waits (at most
    `wait_s`) until their PTYs are closed and returns how many there were. Call it from the
    orchestrator's event loop.
    """
    holders = state.terminals.seal(scenario_id, sealed(reason))
    if holders:
        waits = [asyncio.ensure_future(slot.done.wait()) for slot in holders]
        _, pending = await asyncio.wait(waits, timeout=wait_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d terminal(s) of %s still closing after %.0f s", len(pending),
                        scenario_id, wait_s)
    return len(holders)


@router.websocket("/internal/scenarios/{scenario_id}/tty")
async def terminal(websocket: WebSocket, scenario_id: str) -> None:
    """Open a PTY in the token's host and relay it until either side ends.

    Refusals after authentication (lab not running or sealed, the plan's terminal cap) and
    closes for a reason (idle, grading) are a JSON ``{"type": "closed", "error", "message"}``
    text frame followed by a 44xx close code whose reason is the message.
    """
    state: OrchestratorState = websocket.app.state.orchestrator
    try:
        claims = verify_token(state.settings.sat, TERMINAL,
                              websocket.headers.get(TOKEN_HEADER, ""))
    except TokenError:
        await websocket.close(code=4401)
        return
    if claims["scenario_id"] != scenario_id:
        await websocket.close(code=4403)
        return
    try:
        row = await state.blocking(load, state.ctx.db, scenario_id)
    except ScenarioNotFound:
        await websocket.close(code=4404)
        return
    if (row.tenant_id, row.subject) != (claims["tenant_id"], claims["sub"]):
        await websocket.close(code=4403)
        return
    if row.state != states.RUNNING:
        await _refuse(websocket, not_running(row.state))
        return
    if not state.holds(row.node_id):  # spawn_service routes to the holder; never run here
        await websocket.close(code=4421, reason=f"lab runs on node {row.node_id}")
        return
    refusal = host_refusal(state.registry, row.template_id, str(claims["host"]),
                           websocket.query_params.get("host"))
    if refusal is not None:
        log.info("terminal for %s refused: %s", scenario_id, refusal.error)
        await _refuse(websocket, refusal)
        return
    plan = state.catalog.get(row.plan)
    # A lab whose plan was since removed from plans.yaml gets the defaults.
    limit = plan.max_terminals if plan else DEFAULT_MAX_TERMINALS
    idle_s = plan.terminal_idle_seconds if plan else DEFAULT_TERMINAL_IDLE_SECONDS
    try:
        slot = state.terminals.acquire(scenario_id, limit)
    except SlotRefused as refused:
        log.info("terminal for %s refused: %s", scenario_id, refused.closing.error)
        await _refuse(websocket, refused.closing)
        return
    try:
        await _serve(state, websocket, slot, str(claims["host"]), idle_s)
    finally:
        state.terminals.release(slot)


async def _serve(state: OrchestratorState, websocket: WebSocket, slot: TerminalSlot,
                 host: str, idle_s: int) -> None:
    """Create the terminal for a held slot, relay it, then close it and say why."""
    try:
        session = await state.blocking(recorded_tty(state.runtime, state.settings.storage_root),
                                       slot.scenario_id, host,
                                       _size(websocket, "rows", 24, 500),
                                       _size(websocket, "cols", 80, 1000))
    except RuntimeFault as exc:
        log.warning("terminal for %s refused: %s", slot.scenario_id, exc)
        await websocket.close(code=4404)
        return
    try:
        try:
            await websocket.accept()
        except (RuntimeError, OSError, WebSocketDisconnect):
            return  # the client left while its PTY was being made
        if not slot.stop.is_set():
            activity, keys = Activity(), Keystrokes()
            await until_first_ends(pump_out(websocket, session),
                                   pump_in(websocket, session, activity, keys),
                                   keys.drain(session), _watch(slot, activity, idle_s))
            if keys.dropped:
                log.info("terminal of %s: %d bytes of input dropped (not read by the lab)",
                         slot.scenario_id, keys.dropped)
    finally:
        await state.blocking(session.close)
    if slot.closing is not None:
        await _send_closing(websocket, slot.closing)
    else:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await websocket.close()
