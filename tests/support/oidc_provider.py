"""A real OpenID Provider on loopback for the sign-in tests: pyop's `Provider` behind HTTP.

pyop (the OP library) parses and validates authorization requests, issues codes, checks
client authentication and PKCE at its token endpoint and signs ID tokens with its own RSA
key; this module only puts HTTP around it (discovery, JWKS, a login form, token). The login
form is the provider's, so tests drive it like a person would: open the authorization URL,
post the form with a user name, follow the redirect back to Forge.

Knobs for refusal cases, all of them the provider's own behaviour: its signing key and the
key it publishes (`published`: a key rotation, or a key nobody publishes), `id_token_lifetime`
(pyop's parameter; negative issues an already expired ID token), the issuer it signs with
(changed after Forge cached its discovery document), and `audience`: an ID token signed by
pyop for another registered client (pyop's own signing code, `_create_signed_id_token`; a
provider serving another client's token is the only way one reaches a relying party).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from Cryptodome.PublicKey import RSA
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jwkest.jwk import RSAKey
from pyop.authz_state import AuthorizationState
from pyop.exceptions import InvalidAuthenticationRequest, OAuthError
from pyop.provider import Provider
from pyop.subject_identifier import HashBasedSubjectIdentifierFactory
from pyop.userinfo import Userinfo

from ..live_server import live_server, reserve_port

OTHER_CLIENT = "another-app"


@dataclass
class LocalProvider:
    """A running provider: its issuer URL, the pyop object, and the test knobs."""

    issuer: str
    provider: Provider
    users: dict[str, dict[str, Any]]
    audience: str | None = None
    issued: list[str] = field(default_factory=list)
    published: RSAKey | None = None  # the key set's key; None: the key pyop signs with

    def new_key(self, kid: str, like: RSAKey | None = None) -> RSAKey:
        """An RSA key in pyop's format (to sign with, to publish, or both): fresh, or the key
        material of `like` under another key id."""
        if like is not None:
            return RSAKey(key=like.key, alg="RS256", kid=kid, use="sig")
        return _key(kid)


def _key(kid: str = "op-key-1") -> RSAKey:
    return RSAKey(key=RSA.generate(2048), alg="RS256", kid=kid, use="sig")


def _app(op: LocalProvider) -> FastAPI:
    app = FastAPI()
    provider = op.provider

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> Response:
        return JSONResponse(provider.provider_configuration.to_dict())

    @app.get("/jwks")
    async def jwks() -> Response:
        if op.published is None:
            return JSONResponse(provider.jwks)
        return JSONResponse({"keys": [op.published.serialize()]})

    @app.get("/authorize")
    async def authorize(request: Request) -> Response:
        try:
            provider.parse_authentication_request(request.url.query)
        except InvalidAuthenticationRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return HTMLResponse(
            "<form method='post' action='/login'><input name='request' type='hidden' "
            f"value='{html.escape(request.url.query)}'><input name='user'>"
            "<button>Log in</button></form>")

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        auth_req = provider.parse_authentication_request(str(form["request"]))
        user = str(form["user"])
        answer = provider.authorize(auth_req, user, extra_id_token_claims=_extra(op.users[user]))
        return RedirectResponse(answer.request(auth_req["redirect_uri"]), status_code=303)

    @app.post("/token")
    async def token(request: Request) -> Response:
        body = (await request.body()).decode()
        try:
            auth = request.headers.get("authorization")
            answer = provider.handle_token_request(
                body, {"Authorization": auth} if auth else {},
                extra_id_token_claims=lambda user, _client: _extra(op.users[user]))
        except OAuthError as exc:
            return JSONResponse({"error": exc.oauth_error, "error_description": str(exc)},
                                status_code=400)
        out = answer.to_dict()
        if op.audience is not None:  # the provider hands out a token minted for another app
            claims = json.loads(_payload(out["id_token"]))
            out["id_token"] = provider._create_signed_id_token(
                op.audience, claims["sub"], nonce=claims.get("nonce"))
        op.issued.append(out["id_token"])
        return JSONResponse(out)

    return app


def _extra(user: dict[str, Any]) -> dict[str, Any]:
    """A user's claims for the ID token beyond its subject (the groups, here)."""
    return {k: v for k, v in user.items() if k != "sub"}


def _payload(token: str) -> str:
    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


@contextmanager
def local_provider(redirect_uris: list[str], client_id: str, client_secret: str,
                   users: dict[str, dict[str, Any]]) -> Iterator[LocalProvider]:
    """Start a provider with one registered client (plus another app) and `users`."""
    sock = reserve_port()  # held until served: the settings name it
    port = sock.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    config = {
        "issuer": issuer, "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
    }
    clients = {
        client_id: {"client_secret": client_secret, "redirect_uris": redirect_uris,
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic"},
        OTHER_CLIENT: {"client_secret": "other-secret", "redirect_uris": redirect_uris,
                       "response_types": ["code"]},
    }
    state = AuthorizationState(HashBasedSubjectIdentifierFactory("test-salt"))
    # pyop (through oic) insists on an https issuer when it is built; the tests serve plain
    # http on loopback (Forge accepts http issuers only there), so the name is set after.
    provider = Provider(_key(), {**config, "issuer": "https" + issuer[4:]}, state, clients,
                        Userinfo(users))
    provider.configuration_information["issuer"] = issuer
    op = LocalProvider(issuer, provider, users)
    with live_server(_app(op), sock=sock):  # type: ignore[arg-type]
        yield op


def authorize_query(url: str) -> dict[str, str]:
    """The parameters of an authorization URL (as the provider receives them)."""
    return dict(parse_qsl(urlsplit(url).query))
