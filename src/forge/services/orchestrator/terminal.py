"""The lab terminal: a WebSocket onto a PTY in a lab host, for spawn_service's proxy only.

Authorization is a 60-second TTY token minted by spawn_service for one scenario, subject and
host. Binary frames carry terminal bytes both ways; a text frame
`{"type": "resize", "rows": R, "cols": C}` resizes the PTY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket

from forge.lifecycle import states
from forge.lifecycle.store import ScenarioNotFound, load
from forge.runtime.base import RuntimeFault, TtySession
from forge.services.common.relay import until_first_ends
from forge.services.orchestrator.state import OrchestratorState
from forge.tokens import TERMINAL, TokenError, verify_token

router = APIRouter()
log = logging.getLogger("forge.orchestrator.terminal")
TOKEN_HEADER = "x-forge-terminal"  # noqa: S105 - a header name, not a secret


async def _pump_out(ws: WebSocket, session: TtySession) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = session.read()
        except OSError:
            data = b""
        queue.put_nowait(data)
        if not data:
            loop.remove_reader(session.fileno())

    loop.add_reader(session.fileno(), readable)
    try:
        while True:
            data = await queue.get()
            if not data:
                return
            await ws.send_bytes(data)
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(session.fileno())


async def _pump_in(ws: WebSocket, session: TtySession) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes"):
            session.write(message["bytes"])
        elif message.get("text"):
            try:
                control = json.loads(message["text"])
                if control.get("type") == "resize":
                    rows, cols = int(control["rows"]), int(control["cols"])
                    if 1 <= rows <= 500 and 1 <= cols <= 1000:
                        session.resize(rows, cols)
            except (ValueError, KeyError, TypeError):
                continue


@router.websocket("/internal/scenarios/{scenario_id}/tty")
async def terminal(websocket: WebSocket, scenario_id: str) -> None:
    """Open a PTY in the token's host and relay it until either side ends."""
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
    if row.state != states.RUNNING or (row.tenant_id, row.subject) != (
        claims["tenant_id"], claims["sub"]
    ):
        await websocket.close(code=4409)
        return
    rows = int(websocket.query_params.get("rows", "24") or 24)
    cols = int(websocket.query_params.get("cols", "80") or 80)
    try:
        session = await state.blocking(state.runtime.tty, scenario_id, str(claims["host"]),
                                       max(1, min(rows, 500)), max(1, min(cols, 1000)))
    except RuntimeFault as exc:
        log.warning("terminal for %s refused: %s", scenario_id, exc)
        await websocket.close(code=4404)
        return
    await websocket.accept()
    try:
        await until_first_ends(_pump_out(websocket, session), _pump_in(websocket, session))
    finally:
        await state.blocking(session.close)
        with contextlib.suppress(RuntimeError):
            await websocket.close()
