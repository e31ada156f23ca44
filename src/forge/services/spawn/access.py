"""Access-token exchange: one-time token in the URL → HttpOnly, SameSite=Strict session cookie."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from forge.errors import ForgeError
from forge.identity.caller import (
    OPENED_WITH_KEY,
    SESSION_COOKIE,
    caller_from_session,
    session_claims,
    session_revoked,
)
from forge.lifecycle.scenario_ids import check_scenario_id
from forge.services.common.known_query import FOLLOWED_LINK
from forge.services.common.openapi import errors
from forge.services.common.store_reads import read_call
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.state import SpawnState
from forge.services.spawn.web.security import is_https
from forge.tokens import (
    ACCESS,
    SESSION,
    TokenError,
    TokenReplayed,
    mint_token_claims,
    verify_token,
)
from forge.tokens.replay import consume_once

router = APIRouter(tags=["access"])
SESSION_TTL_S = 8 * 3600
# A browser signed in as one learner that opens another's lab link (sent to them, say): the
# link's session replaced theirs without a word, so they went on in a lab they took for
# their own while its terminal recordings, which its owner reads, kept what they typed.
ANOTHER_LEARNER = ForgeError(
    "signed_in_as_another", 409, "token: this browser is signed in as another learner; sign "
    "out first, then open the lab link again (it is not used up)")


def _revoked(state: SpawnState, session: str) -> bool:
    """Whether the browser's (valid) session cookie was signed out or its key revoked."""
    claims = session_claims(state.settings, session)
    return claims is None or session_revoked(state.ctx.db, claims)


@router.get("/v1/access/{scenario_id}", status_code=303, response_class=RedirectResponse,
            openapi_extra=FOLLOWED_LINK,
            responses={303: {"description": "Session cookie set; on to the lab page"},
                       **errors(401, 404, 409)})
async def exchange(scenario_id: str, request: Request,
                   token: str = Query(..., max_length=4096)) -> RedirectResponse:
    """Verify the access token once, set the session cookie, redirect to the lab page (401
    ``key_revoked`` when the API key that started the lab was revoked since; 409
    ``signed_in_as_another``, the link left unused, in a browser signed in as another
    learner)."""
    state = spawn_state(request)
    check_scenario_id(scenario_id)
    try:
        claims = verify_token(state.settings.sat, ACCESS, token)
    except TokenError as exc:
        raise ForgeError(exc.code, 401, f"token: {exc}") from None
    if claims["scenario_id"] != scenario_id:
        raise ForgeError("token_mismatch", 401, "token: access token is for another scenario")
    # A lab started with an API key (or a session it opened): the link's session is that
    # key's, ending when it is revoked, and a link of a key revoked already opens nothing.
    wanted = {"sub": claims["sub"], "tenant_id": claims["tenant_id"],
              "scope": f"scenario:{scenario_id}"}
    if OPENED_WITH_KEY in claims:
        wanted[OPENED_WITH_KEY] = claims[OPENED_WITH_KEY]
    session, session_claims = mint_token_claims(state.settings.sat, SESSION, wanted,
                                                ttl_s=SESSION_TTL_S)
    # Its reads inline on SQLite (`read_call`), its one write on the store's writer thread:
    # an AnyIO worker hop each cost more CPU than the read itself (every lab opens once).
    db = state.ctx.db
    if OPENED_WITH_KEY in wanted and await read_call(db, session_revoked, db, session_claims):
        raise ForgeError("key_revoked", 401, "token: the API key that started this lab was "
                         "revoked, so its access link no longer opens it; sign in instead")
    existing = request.cookies.get(SESSION_COOKIE)
    current = caller_from_session(state.settings, existing) if existing else None
    owner = (str(claims["tenant_id"]), str(claims["sub"]))
    if current is not None and not current.owns(*owner) and existing is not None and \
            not await read_call(db, _revoked, state, existing):
        raise ANOTHER_LEARNER  # the link stays unused, for its learner's own browser
    expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    try:
        await db.write(consume_once, state.replay, str(claims["jti"]), "ACC", expires)
    except TokenReplayed:
        raise ForgeError("token_replayed", 401,
                         "token: this access link was already used") from None
    response = RedirectResponse(f"/lab/{scenario_id}", status_code=303)
    if current is not None and current.scenario_scope is None and current.owns(*owner) \
            and existing is not None and not await read_call(db, _revoked, state, existing):
        return response  # a signed-in learner already has a wider session (still live)
    response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_TTL_S, httponly=True,
                        secure=is_https(request), samesite="strict", path="/")
    return response
