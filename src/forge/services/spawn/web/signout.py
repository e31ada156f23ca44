"""Sign-out, server side: revoke the browser session and end every terminal it holds.

`forge.services.spawn.terminal_signout` holds the mechanics (the process's relays, the call
to the lab nodes); this is the web page's step, run before the cookies are cleared.
"""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from forge.identity.caller import SESSION_COOKIE, revoke_session, session_claims
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.terminal_signout import close_node_terminals
from forge.services.spawn.web.state import web_state

log = logging.getLogger("forge.spawn.web")


async def end_terminals(request: Request) -> None:
    """Revoke the request's learner session (if any), close its relays in this process, and
    close the learner's terminal sessions on the nodes of their running labs."""
    token = request.cookies.get(SESSION_COOKIE)
    claims = session_claims(spawn_state(request).settings, token) if token else None
    if claims is None or not claims.get("jti"):
        return  # no valid session: nothing to revoke, nothing it could have opened
    state = spawn_state(request)
    await run_in_threadpool(revoke_session, state.ctx.db, claims)
    relays = state.terminal_relays.sign_out(str(claims["jti"]))
    closed = (await close_node_terminals(state.settings, state.ctx.db,
                                         web_state(request).backend.http.client,
                                         str(claims["tenant_id"]), str(claims["sub"]))).closed
    log.info("sign-out closed %d terminal relay(s) and %d node session(s)", relays, closed)
