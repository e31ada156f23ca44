"""Sign-out, server side: revoke the browser session and end every terminal it holds; a
sign-in over another person's session ends that session the same way.

`forge.services.spawn.terminal_signout` holds the mechanics (the process's relays, the call
to the lab nodes); this is the web page's step, run before the cookies are cleared.
"""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from forge.identity.caller import SESSION_COOKIE, revoke_session, session_claims, session_revoked
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.terminal_signout import close_node_terminals
from forge.services.spawn.web.security import (
    OPENED_BY_SUBJECT,
    OPENED_BY_TENANT,
    OPS_COOKIE,
    operator_session_claims,
)
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


async def end_another_persons(request: Request, tenant_id: str, subject: str) -> bool:
    """Sign-in as (``tenant_id``, ``subject``) in a browser holding another person's live
    session (a shared computer): end that session as a sign-out would (revoked everywhere,
    its terminals closed) and an operator role that person opened through single sign-on,
    rather than only replacing the cookie, which left the session live on the server for
    any copy of it until its idle limit (and the operator role in this browser). The same
    learner's own session, and an operator session opened with OPERATOR_TOKEN (nobody's),
    are left as they are. True when an operator session was ended (its cookie is to go)."""
    state = spawn_state(request)
    token = request.cookies.get(SESSION_COOKIE)
    claims = session_claims(state.settings, token) if token else None
    if claims is not None and (claims.get("tenant_id"), claims.get("sub")) != (
            tenant_id, subject) and not await run_in_threadpool(
                session_revoked, state.ctx.db, claims):
        await end_terminals(request)
    ops = operator_session_claims(state.settings, request.cookies.get(OPS_COOKIE))
    person = None if ops is None else (ops.get(OPENED_BY_TENANT), ops.get(OPENED_BY_SUBJECT))
    if ops is not None and person != (None, None) and person != (tenant_id, subject):
        await run_in_threadpool(revoke_session, state.ctx.db, ops)
        return True
    return False
