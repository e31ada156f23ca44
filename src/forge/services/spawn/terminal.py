"""The learner's browser terminal: a WebSocket proxied to the orchestrator's lab PTY.

The browser only ever talks to spawn_service; the orchestrator is reached with a 60-second
TTY token bound to this scenario, learner and host. Frames pass through unchanged both ways,
so the orchestrator's protocol (its `attached` frame, terminal bytes, resizes) and its
reasons for refusing or closing a terminal (a JSON text frame, then a 44xx close code) reach
the browser as they are. A relay opened with a session cookie ends the moment that session
signs out (`signed_out` / 4401, terminal_signout); its cookie cannot open another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from urllib.parse import urlencode, urlsplit

import websockets
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from forge.identity.caller import SESSION_COOKIE, AuthError, resolve_caller, session_claims
from forge.lifecycle.scenario_ids import is_scenario_id
from forge.services.common.relay import SIGNED_OUT_CODE, until_first_ends
from forge.services.spawn.node_routing import node_base
from forge.services.spawn.state import SpawnState
from forge.services.spawn.terminal_signout import SIGNED_OUT_MESSAGE
from forge.store.models import Scenario
from forge.templates import dsl_limits as L
from forge.tokens import TERMINAL, mint_token

router = APIRouter()
LEARNER_HOST = L.LEARNER_HOST  # the host when the request names none (CLI, older pages)
HOST_NAME = re.compile(L.IDENT_PATTERN)  # a template host name (DSL identifier)
# Why a terminal closed with 4503: the page shows it above "Connection lost — reconnecting…"
# (it read "lab node n1 is unreachable; the lab fails by itself if the node does not come
# back", the API's words for an operator, with no full stop before the page's own).
NODE_GONE = ("The machine running your lab is not answering. If it does not come back, "
             "the lab ends without a score.")


def _same_origin(websocket: WebSocket) -> bool:
    """Browsers send Origin; it must be this service (blocks cross-site WebSocket hijacking)."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (CLI, demo); credentials are still required
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # "http://[x" is no site's origin (it was a 500 on the handshake)
        return False
    return netloc == websocket.headers.get("host", "")


def _owned_running(state: SpawnState, scenario_id: str, tenant: str,
                   subject: str) -> tuple[str | None, str | None] | None:
    """(node_id, node_url) of the caller's running lab, or None when it is not one."""
    with state.ctx.db.read() as sess:
        row = sess.get(Scenario, scenario_id)
        if row and row.tenant_id == tenant and row.subject == subject \
                and row.state == "running":
            return row.node_id, row.node_url
        return None


async def _relay_browser(browser: WebSocket, upstream: websockets.ClientConnection) -> None:
    while True:
        message = await browser.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await upstream.send(message["bytes"])
        elif message.get("text") is not None:
            await upstream.send(message["text"])


async def _relay_lab(browser: WebSocket, upstream: websockets.ClientConnection) -> None:
    async for data in upstream:
        if isinstance(data, bytes):
            await browser.send_bytes(data)
        else:
            await browser.send_text(data)


@router.websocket("/v1/scenarios/{scenario_id}/terminal")
async def terminal(websocket: WebSocket, scenario_id: str) -> None:
    """Relay the learner's terminal to a lab host (`?host=`, default "learner"); the
    orchestrator refuses hosts the template does not mark `access: learner`."""
    state: SpawnState = websocket.app.state.spawn
    host = websocket.query_params.get("host", LEARNER_HOST)
    if not is_scenario_id(scenario_id) or not _same_origin(websocket):
        await websocket.close(code=4403)
        return
    if not HOST_NAME.fullmatch(host):
        await websocket.close(code=4400)  # not a lab host name; nothing is minted
        return
    # Registered before the cookie is checked, so a sign-out racing this open is seen.
    cookie = websocket.cookies.get(SESSION_COOKIE)
    claims = session_claims(state.settings, cookie) if cookie else None
    session_id = str(claims["jti"]) if claims and claims.get("jti") else None
    revoked = state.terminal_relays.register(session_id) if session_id else asyncio.Event()
    try:
        await _relay(websocket, state, scenario_id, host, revoked)
    finally:
        if session_id:
            state.terminal_relays.unregister(session_id, revoked)


async def _relay(websocket: WebSocket, state: SpawnState, scenario_id: str, host: str,
                 revoked: asyncio.Event) -> None:
    """Authenticate, find the lab's node, and relay until either side ends or the browser
    session signs out."""
    try:
        caller = await run_in_threadpool(resolve_caller, websocket.headers, websocket.cookies,
                                         state.settings, state.ctx.db, None, method="GET")
    except AuthError:
        await websocket.close(code=4401)
        return
    if caller.via != "session":
        revoked = asyncio.Event()  # an API key is not signed out by a browser session
    holder = await run_in_threadpool(_owned_running, state, scenario_id, caller.tenant_id,
                                     caller.subject) if caller.may_see(scenario_id) else None
    if holder is None:
        await websocket.close(code=4404)
        return
    node_id, node_url = holder
    token = mint_token(state.settings.sat, TERMINAL, {
        "scenario_id": scenario_id, "sub": caller.subject, "tenant_id": caller.tenant_id,
        "host": host,
    })
    # The node holding the lab, by the URL it registered on the row (never request input).
    base = node_base(state.settings, node_url).replace("http://", "ws://", 1).replace(
        "https://", "wss://", 1)
    # The size only when the browser gave one: a reattach without it (the CLI, an older
    # page) keeps the shell's size, where a 24x80 default shrank it under the other tabs.
    # `writer` (the page's terminal, for sending again what a hung link lost) as given:
    # the orchestrator takes only a well-formed one.
    query = urlencode({**{k: websocket.query_params[k][:64] for k in ("rows", "cols", "writer")
                          if k in websocket.query_params}, "host": host})
    try:
        upstream = await websockets.connect(
            f"{base}/internal/scenarios/{scenario_id}/tty?{query}",
            additional_headers={"x-forge-terminal": token}, open_timeout=10,
            max_size=2**20,
        )
    except (OSError, TimeoutError):
        if node_id is None:
            await websocket.close(code=1011)
            return
        # A lab node that is gone: say so (the page shows the reason), do not hang.
        await websocket.accept()
        await websocket.close(code=4503, reason=NODE_GONE)
        return
    except (websockets.InvalidStatus, websockets.InvalidHandshake):
        await websocket.close(code=1011)
        return
    try:
        if revoked.is_set():
            await websocket.close(code=SIGNED_OUT_CODE, reason=SIGNED_OUT_MESSAGE)
            return
        await websocket.accept()
        await until_first_ends(_relay_browser(websocket, upstream),
                               _relay_lab(websocket, upstream), _signed_out(revoked))
    finally:
        await upstream.close()
    if revoked.is_set():
        code, reason = SIGNED_OUT_CODE, SIGNED_OUT_MESSAGE
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await websocket.send_text(json.dumps({"type": "closed", "error": "signed_out",
                                                  "message": SIGNED_OUT_MESSAGE}))
    else:
        code, reason = _passed_on(upstream)
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.close(code=code, reason=reason)


async def _signed_out(revoked: asyncio.Event) -> None:
    """Return when the relay's browser session signs out."""
    await revoked.wait()


def _passed_on(upstream: websockets.ClientConnection) -> tuple[int, str]:
    """The orchestrator's own close code and reason (terminal cap, idle, grading), else 1000.

    Only the application range 4000-4999 is passed on, so the page can tell the learner why.
    """
    code = upstream.close_code
    if code is not None and 4000 <= code <= 4999:
        return code, upstream.close_reason or ""
    return 1000, ""
