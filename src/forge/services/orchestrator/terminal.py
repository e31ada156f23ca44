"""The lab terminal: a WebSocket onto a lab host's terminal session, for spawn_service's
proxy only.

Authorization is a 60-second TTY token minted by spawn_service for one scenario, subject and
host; the host must be one the lab's template marks `access: learner` (terminal_access).
Every attach, a first one or a reattach, passes the same checks.

Sessions (terminal_sessions): one shell per (lab, host) outlives its sockets. A socket
attaches to the host's live session, or starts one; a reload, a dropped connection or a
second tab gets the SAME shell. The query's ``rows`` and ``cols`` size a new shell (24x80
without them) and resize a live one on reattach (left as it is without them). Frames:

* first, a text frame ``{"type": "attached", "session": ID, "replayed": N, "new": BOOL}``:
  ``new`` is true for a fresh shell, false for a reattach; ``N`` bytes of the session's
  recent output follow (one binary frame beginning with a terminal reset, ``ESC c``, when
  N > 0), so a page that reconnects redraws instead of repeating what it shows;
* binary frames: terminal bytes both ways; a text frame
  ``{"type": "resize", "rows": R, "cols": C}`` resizes the shell (the latest one wins);
* a text frame ``{"type": "ping", "id": N}`` is answered at once with
  ``{"type": "pong", "id": N, "room": BYTES}``: the page's heartbeat (a link that stalls
  without closing is noticed within seconds) and its pacing of a long paste (``room`` is how
  much more input the session queues now; input past it is dropped, as a real terminal drops
  input its program does not read);
* with ``?writer=W`` (a page's terminal names itself, 8-64 letters, digits, ``-`` or
  ``_``), the attached frame and each pong also carry ``"received": N``, the input bytes
  the session has taken from W over all its sockets: a page whose link hung sends again
  what the shell did not get, and input arriving late on W's older socket is dropped (the
  attached frame leaves it out for a W the session cannot tell from one of the writers it
  has forgotten, past the 64 it keeps: the page then says what may not have reached the
  shell rather than typing it twice);
* a refusal or a close for a reason: ``{"type": "closed", "error", "message"}``, then a
  44xx close code whose reason is the message. A shell that exits ends with code 1000.

A lab has at most its plan's `max_terminals` live shells (sessions, all tabs and devices
together; reattaching never counts twice); a session takes at most 4 sockets. A session
without input for the plan's `terminal_idle_seconds` is closed, attached or not;
`close_terminals` closes every session of a lab when its grading starts and refuses new ones
from then on; `POST /internal/scenarios/{id}/terminals/close` (spawn_service, at sign-out)
closes them without sealing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect

from forge.errors import ForgeError
from forge.lifecycle import states
from forge.lifecycle.store import ScenarioNotFound, load
from forge.plans import DEFAULT_MAX_TERMINALS, DEFAULT_TERMINAL_IDLE_SECONDS
from forge.runtime.base import RuntimeFault
from forge.runtime.recording import recorded_tty
from forge.services.common.relay import until_first_ends
from forge.services.orchestrator.sealed_on_submit import (
    SUBMIT_REASON,
    keep_submitted,
    was_submitted,
)
from forge.services.orchestrator.state import OrchestratorState
from forge.services.orchestrator.terminal_access import host_refusal
from forge.services.orchestrator.terminal_output import RESET, Attachment
from forge.services.orchestrator.terminal_sessions import TerminalSession
from forge.services.orchestrator.terminal_slots import (
    Closing,
    SlotRefused,
    TerminalSlot,
    not_running,
    sealed,
    signed_out,
    time_up,
)
from forge.store.timestamps import aware
from forge.tokens import TERMINAL, TERMINAL_CLOSE, TokenError, verify_token

router = APIRouter()
log = logging.getLogger("forge.orchestrator.terminal")
TOKEN_HEADER = "x-forge-terminal"  # noqa: S105 - a header name, not a secret


_WRITER = re.compile(r"[A-Za-z0-9_-]{8,64}")


async def _send_closing(ws: WebSocket, closing: Closing | None) -> None:
    """Tell the client why (a JSON text frame, then the close code and reason; a plain close
    when there is no reason); it may be gone."""
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        if closing is None:
            await ws.close()
            return
        await ws.send_text(json.dumps(closing.body()))
        await ws.close(code=closing.code, reason=closing.reason())


async def _refuse(ws: WebSocket, closing: Closing) -> None:
    """Accept only to say why not: a refusal the page can show, not a bare failed handshake."""
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await ws.accept()
        await _send_closing(ws, closing)


def _size(ws: WebSocket, name: str, most: int) -> int | None:
    raw = ws.query_params.get(name, "")
    ok = raw.isascii() and raw.isdigit() and len(raw) <= 6
    return max(1, min(int(raw), most)) if ok else None


async def _wait_closed(slots: list[TerminalSlot], scenario_id: str, wait_s: float) -> None:
    """Wait (at most `wait_s`) until the given sessions' terminals are closed."""
    if not slots:
        return
    waits = [asyncio.ensure_future(slot.done.wait()) for slot in slots]
    _, pending = await asyncio.wait(waits, timeout=wait_s)
    for task in pending:
        task.cancel()
    if pending:
        log.warning("%d terminal(s) of %s still closing after %.0f s", len(pending),
                    scenario_id, wait_s)


async def close_terminals(state: OrchestratorState, scenario_id: str, reason: str,
                          wait_s: float = 10.0) -> int:
    """Close every terminal session of the lab and refuse new ones from now on (grading).

    Each attached socket gets a ``lab_sealed`` message and close code 4410; this waits (at
    most `wait_s`) until the sessions' terminals are closed and returns how many sessions
    there were. Call it from the orchestrator's event loop.
    """
    holders = state.terminals.seal(scenario_id, sealed(reason))
    await _wait_closed(holders, scenario_id, wait_s)
    return len(holders)


async def _closing_lab(scenario_id: str, request: Request) -> OrchestratorState:
    """The orchestrator, once the request's terminal-close token (spawn_service's, for
    this scenario and its learner) is checked against the lab it names, held here."""
    state: OrchestratorState = request.app.state.orchestrator
    try:
        claims = verify_token(state.settings.sat, TERMINAL_CLOSE,
                              request.headers.get(TOKEN_HEADER, ""))
    except TokenError:
        raise ForgeError("invalid_terminal_token", 401,
                         f"{TOKEN_HEADER}: missing or invalid terminal token") from None
    if claims["scenario_id"] != scenario_id:  # before any read: the token names its lab
        raise ForgeError("not_found", 404, "scenario not found")
    try:
        row = await state.read(load, state.ctx.db, scenario_id)
    except ScenarioNotFound:
        raise ForgeError("not_found", 404, "scenario not found") from None
    if (row.tenant_id, row.subject) != (claims["tenant_id"], claims["sub"]):
        raise ForgeError("not_found", 404, "scenario not found")
    if not state.holds(row.node_id):
        raise ForgeError("lab_on_other_node", 409, f"lab runs on node {row.node_id}")
    return state


@router.post("/internal/scenarios/{scenario_id}/terminals/close", include_in_schema=False)
async def close_for_signout(scenario_id: str, request: Request) -> dict[str, int]:
    """End every terminal session of the lab because its learner signed out (spawn_service,
    with a terminal-close token for this scenario and learner). The lab stays open to a new
    terminal after the next sign-in; attached sockets get ``signed_out`` / 4401."""
    state = await _closing_lab(scenario_id, request)
    slots = state.terminal_sessions.close_lab(scenario_id, signed_out())
    await _wait_closed(slots, scenario_id, 10.0)
    return {"closed": len(slots)}


@router.post("/internal/scenarios/{scenario_id}/terminals/seal", include_in_schema=False)
async def seal_for_submit(scenario_id: str, request: Request) -> dict[str, int]:
    """Close the lab's terminals and refuse new ones because its learner's Submit was
    accepted (spawn_service, with a terminal-close token for this scenario and learner):
    grading waits its turn behind other submits, and until it starts, which seals them too,
    the learner could otherwise go on working in a lab already submitted. Attached sockets
    get ``lab_sealed`` / 4410. The seal is kept on disk too (``sealed_on_submit``): a restart
    of this node while the submit waits does not open the lab again."""
    state = await _closing_lab(scenario_id, request)
    # On disk first: a restart of this node while the submit waits must not open the lab.
    try:
        await state.blocking(keep_submitted, state.settings.storage_root, scenario_id)
    except OSError:  # a full disk: the seal in memory still holds until a restart
        log.warning("submit seal of %s not kept on disk", scenario_id, exc_info=True)
    return {"closed": await close_terminals(state, scenario_id, SUBMIT_REASON)}


@router.websocket("/internal/scenarios/{scenario_id}/tty")
async def terminal(websocket: WebSocket, scenario_id: str) -> None:
    """Attach to the token's host's terminal session (starting one if none is live) and
    relay it until the socket or the session ends.

    Refusals after authentication (lab not running or sealed, the plan's terminal cap, the
    session's socket cap) and closes for a reason (idle, grading, sign-out) are a JSON
    ``{"type": "closed", "error", "message"}`` text frame followed by a 44xx close code whose
    reason is the message.
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
        row = await state.read(load, state.ctx.db, scenario_id)
    except ScenarioNotFound:
        await websocket.close(code=4404)
        return
    if (row.tenant_id, row.subject) != (claims["tenant_id"], claims["sub"]):
        await websocket.close(code=4403)
        return
    if row.state != states.RUNNING:
        await _refuse(websocket, not_running(row.state))
        return
    if _left_s(row.expires_at) <= 0:  # ended; the reaper grades it at its next round
        await _refuse(websocket, time_up())
        return
    if not state.holds(row.node_id):  # spawn_service routes to the holder; never run here
        await websocket.close(code=4421, reason=f"lab runs on node {row.node_id}")
        return
    if not state.terminals.is_sealed(scenario_id) and await state.blocking(
            was_submitted, state.settings.storage_root, scenario_id):
        state.terminals.seal(scenario_id, sealed(SUBMIT_REASON))  # a restart forgot it
    host = str(claims["host"])
    refusal = host_refusal(state.registry, row.template_id, host,
                           websocket.query_params.get("host"))
    if refusal is not None:
        log.info("terminal for %s refused: %s", scenario_id, refusal.error)
        await _refuse(websocket, refusal)
        return
    plan = state.catalog.get(row.plan)
    # A lab whose plan was since removed from plans.yaml gets the defaults.
    limit = plan.max_terminals if plan else DEFAULT_MAX_TERMINALS
    idle_s = plan.terminal_idle_seconds if plan else DEFAULT_TERMINAL_IDLE_SECONDS
    rows, cols = _size(websocket, "rows", 500), _size(websocket, "cols", 1000)
    raw_writer = websocket.query_params.get("writer", "")
    writer = raw_writer if _WRITER.fullmatch(raw_writer) else None
    try:
        session, new = await state.terminal_sessions.get_or_open(
            recorded_tty(state.runtime, state.settings.storage_root), state.blocking,
            scenario_id, host, limit, idle_s, (rows or 24, cols or 80))
        attachment, replay = session.attach()
        received = None if writer is None else session.claim(writer, attachment)
    except SlotRefused as refused:
        log.info("terminal for %s refused: %s", scenario_id, refused.closing.error)
        await _refuse(websocket, refused.closing)
        return
    except RuntimeFault as exc:
        log.warning("terminal for %s refused: %s", scenario_id, exc)
        await websocket.close(code=4404)
        return
    try:
        if rows is not None and cols is not None and not new:
            session.resize(rows, cols)
        await _serve(websocket, session, Writer(attachment, writer, received), replay, new,
                     _close_at_end(state, scenario_id))
    finally:
        session.detach(attachment)
    await _send_closing(websocket, attachment.closing)


@dataclass(frozen=True)
class Writer:
    """A socket's attachment, and the page terminal typing through it (None: unnamed)."""

    att: Attachment
    name: str | None = None
    received: int | None = None  # the writer's input taken before this socket


async def _serve(ws: WebSocket, session: TerminalSession, writer: Writer, replay: bytes,
                 new: bool, watch: Coroutine[Any, Any, None]) -> None:
    """Say which session this is, replay its recent output, then relay until either ends
    (`watch` runs beside the relay: it closes the lab's terminals at its end time)."""
    att = writer.att
    attached: dict[str, object] = {"type": "attached", "session": session.session_id,
                                   "replayed": len(replay), "new": new}
    if writer.received is not None:
        attached["received"] = writer.received
    try:
        await ws.accept()
        await ws.send_text(json.dumps(attached))
        if replay:
            await ws.send_bytes(RESET + replay)
    except (RuntimeError, OSError, WebSocketDisconnect):
        watch.close()
        return  # the client left while attaching
    sending = asyncio.Lock()  # output and pongs go out from two tasks, one frame at a time
    await until_first_ends(_pump_out(ws, att, sending), _pump_in(ws, session, sending, writer),
                           watch)


END_RECHECK_S = 60.0  # an extension moves the end: the row is read again at least this often


def _left_s(expires_at: datetime | None) -> float:
    """Seconds until the lab's end time (infinite without one; 0 or less once passed)."""
    if expires_at is None:
        return float("inf")
    return (aware(expires_at) - datetime.now(UTC)).total_seconds()


async def _close_at_end(state: OrchestratorState, scenario_id: str) -> None:
    """Close every terminal of the lab once its end time passes (read again for extensions;
    none is possible after it), then wait to be cancelled with the relay. Before, a shell
    stayed open until the reaper graded the lab, one lab after another: the learner typed
    answers after the end that the expired lab's verdict counted (the task checks, by
    contrast, refuse a lab past its end)."""
    while True:
        try:
            row = await state.read(load, state.ctx.db, scenario_id)
        except ScenarioNotFound:
            break
        except Exception:  # a store fault must not end the learner's relay: ask again
            log.warning("terminal end watch of %s: store read failed; retrying",
                        scenario_id, exc_info=True)
            await asyncio.sleep(END_RECHECK_S)
            continue
        left = _left_s(row.expires_at)
        if row.state != states.RUNNING or left == float("inf"):
            break  # grading (or its end) closes the terminals itself
        if left <= 0:
            state.terminals.seal(scenario_id, time_up())
            break
        await asyncio.sleep(min(left, END_RECHECK_S))
    await asyncio.Event().wait()  # never ends the relay by itself


async def _pump_out(ws: WebSocket, att: Attachment, sending: asyncio.Lock) -> None:
    """Session output queued for this socket → the client, one chunk at a time; returns
    once the socket is asked to go (after sending what was queued)."""
    while data := await att.take():
        async with sending:
            await ws.send_bytes(data)


def _pong(control: dict[str, object], session: TerminalSession,
          writer: str | None = None) -> str:
    """The answer to a ping: its id (a small whole number, else null), the input room and,
    for a named writer, the input taken from it."""
    raw = control.get("id")
    ident = raw if isinstance(raw, int) and not isinstance(raw, bool) and \
        0 <= raw < 2**31 else None
    answer: dict[str, object] = {"type": "pong", "id": ident, "room": session.keys.room}
    if writer is not None:
        answer["received"] = session.received.get(writer, 0)
    return json.dumps(answer)


async def _pump_in(ws: WebSocket, session: TerminalSession,
                   sending: asyncio.Lock | None = None, writer: Writer | None = None) -> None:
    """Client → session: binary frames are keystrokes; a text frame may resize the shell
    or ask for a pong."""
    sending = sending or asyncio.Lock()
    name = writer.name if writer is not None else None
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes"):
            if writer is None:
                session.type(message["bytes"])
            else:
                session.type_from(name, writer.att, message["bytes"])
        elif message.get("text"):
            try:
                control = json.loads(message["text"])
                if control.get("type") == "ping":
                    async with sending:
                        await ws.send_text(_pong(control, session, name))
                elif control.get("type") == "resize":
                    rows, cols = int(control["rows"]), int(control["cols"])
                    if 1 <= rows <= 500 and 1 <= cols <= 1000:
                        session.resize(rows, cols)
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError,
                    RecursionError):
                # (int(float("inf")) is an OverflowError, "[[[[…" nested past the
                # recursion limit a RecursionError: a bad frame, not a close)
                continue
