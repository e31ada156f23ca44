"""OpenID Connect sign-in (authorization code + PKCE) against a tenant's identity provider.

`begin` makes what a sign-in needs before the browser leaves: state, nonce and PKCE
verifier (Authlib's generators), and the provider's authorization URL. `finish` turns the
callback's code into a verified identity: the code is exchanged at the provider's token
endpoint with the verifier and the client's credentials, then the ID token is checked with
joserfc against the provider's published keys (signature with an asymmetric algorithm,
issuer, audience and authorized party, expiry, issue time, nonce) and mapped to a subject,
a role and groups. Discovery documents and key sets are fetched with a timeout, a size
bound and no redirects, and cached. Every refusal is `OidcRefused`: a plain sentence for
the person and a technical reason for the operator's log (never a secret or a token).
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from forge.errors import ForgeError
from forge.identity.names import valid_id
from forge.identity.oidc_config import OidcTenant, endpoint_allowed
from forge.identity.roles import INSTRUCTOR, LEARNER, OPERATOR

TIMEOUT_S = 5.0
MAX_DISCOVERY_BYTES = 64 * 1024
MAX_JWKS_BYTES = 256 * 1024
MAX_TOKEN_BYTES = 64 * 1024
CACHE_S = 3600.0
LEEWAY_S = 60
ID_TOKEN_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                 "ES512", "EdDSA")
MAX_GROUPS = 64
_TRY_AGAIN = "Start again, and if this keeps happening, tell your organisation's administrator."


class OidcRefused(ForgeError):
    """A sign-in through an identity provider was refused: `message` is for the person,
    `reason` for the operator's log."""

    def __init__(self, code: str, status: int, message: str, reason: str) -> None:
        super().__init__(code, status, message)
        self.reason = reason


@dataclass(frozen=True)
class Pending:
    """What the callback must match, kept in the browser that started the sign-in."""

    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True)
class Identity:
    """A verified person of a tenant: subject, role, groups, and when their ID token ends."""

    tenant_id: str
    subject: str
    role: str
    groups: tuple[str, ...]
    expires_at: int


@dataclass
class _Cached:
    value: dict[str, Any]
    at: float


class ProviderCache:
    """Discovery documents and key sets per issuer, kept for an hour (a key set is fetched
    again when an ID token names a key it lacks: the provider rotated its keys)."""

    def __init__(self) -> None:
        self._docs: dict[str, _Cached] = {}
        self._keys: dict[str, _Cached] = {}

    async def discovery(self, client: httpx.AsyncClient, issuer: str) -> dict[str, Any]:
        """The issuer's discovery document, checked to name this very issuer."""
        cached = self._docs.get(issuer)
        if cached is not None and time.monotonic() - cached.at < CACHE_S:
            return cached.value
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = await _get_json(client, url, MAX_DISCOVERY_BYTES, "discovery document")
        if doc.get("issuer") != issuer:
            raise _provider_fault("discovery document names another issuer")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not endpoint_allowed(doc.get(name), issuer):  # https, and not internal
                raise _provider_fault(f"discovery document's {name} is not allowed")
        self._docs[issuer] = _Cached(doc, time.monotonic())
        return doc

    async def keys(self, client: httpx.AsyncClient, jwks_uri: str, *, fresh: bool = False
                   ) -> KeySet:
        """The provider's published signing keys."""
        cached = self._keys.get(jwks_uri)
        if fresh or cached is None or time.monotonic() - cached.at >= CACHE_S:
            doc = await _get_json(client, jwks_uri, MAX_JWKS_BYTES, "key set")
            cached = _Cached(doc, time.monotonic())
            self._keys[jwks_uri] = cached
        try:
            return KeySet.import_key_set(cached.value)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise _provider_fault("key set cannot be read") from None


def _provider_fault(reason: str) -> OidcRefused:
    return OidcRefused("oidc_provider_unusable", 502, "Your organisation's sign-in service "
                       "did not answer as expected. " + _TRY_AGAIN, reason)


def _untrusted(reason: str) -> OidcRefused:
    return OidcRefused("oidc_identity_refused", 401, "The answer from your organisation's "
                       "sign-in service could not be trusted, so you are not signed in. "
                       + _TRY_AGAIN, reason)


async def _read_bounded(response: httpx.Response, limit: int, what: str) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk)
        if len(body) > limit:
            raise _provider_fault(f"{what} is larger than {limit} bytes")
    return bytes(body)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise _provider_fault(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise _provider_fault(f"{what} is not a JSON object")
    return value


async def _get_json(client: httpx.AsyncClient, url: str, limit: int, what: str
                    ) -> dict[str, Any]:
    try:
        async with client.stream("GET", url, timeout=TIMEOUT_S,
                                 follow_redirects=False) as response:
            if response.status_code != 200:
                raise _provider_fault(f"{what} answered HTTP {response.status_code}")
            raw = await _read_bounded(response, limit, what)
    except httpx.HTTPError as exc:
        raise _provider_fault(f"{what} unreachable ({type(exc).__name__})") from None
    return _json_object(raw, what)


def begin(tenant: OidcTenant, discovery: dict[str, Any]) -> tuple[Pending, str]:
    """A new sign-in: its state, nonce and PKCE verifier, and the URL to send the browser to."""
    pending = Pending(generate_token(43), generate_token(43), generate_token(64))
    cfg = tenant.config
    url = prepare_grant_uri(
        str(discovery["authorization_endpoint"]), cfg.client_id, "code",
        redirect_uri=cfg.redirect_uri, scope=" ".join(cfg.scopes), state=pending.state,
        nonce=pending.nonce, code_challenge=create_s256_code_challenge(pending.verifier),
        code_challenge_method="S256")
    return pending, url


def _client_auth(tenant: OidcTenant, form: dict[str, str]) -> dict[str, str]:
    cfg = tenant.config
    if cfg.token_auth == "client_secret_post":  # noqa: S105 - a method name
        form.update(client_id=cfg.client_id, client_secret=tenant.client_secret)
        return {}
    pair = f"{quote(cfg.client_id, safe='')}:{quote(tenant.client_secret, safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


async def _exchange(client: httpx.AsyncClient, tenant: OidcTenant, discovery: dict[str, Any],
                    code: str, pending: Pending) -> str:
    """The ID token the provider gives for `code` (with the PKCE verifier)."""
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": tenant.config.redirect_uri, "code_verifier": pending.verifier}
    headers = {"Accept": "application/json", **_client_auth(tenant, form)}
    try:
        async with client.stream("POST", str(discovery["token_endpoint"]), data=form,
                                 headers=headers, timeout=TIMEOUT_S,
                                 follow_redirects=False) as response:
            raw = await _read_bounded(response, MAX_TOKEN_BYTES, "token answer")
            status = response.status_code
    except httpx.HTTPError as exc:
        raise _provider_fault(f"token endpoint unreachable ({type(exc).__name__})") from None
    body = _json_object(raw, "token answer")
    if status != 200:
        error = body.get("error")
        kind = error if isinstance(error, str) and error.isascii() and len(error) < 64 else "?"
        raise OidcRefused("oidc_code_refused", 401, "Your organisation's sign-in service did "
                          "not accept this sign-in (it may have been used already or have "
                          "expired). " + _TRY_AGAIN,
                          f"token endpoint refused the code: HTTP {status}, error {kind}")
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise _untrusted("token answer carries no id_token")
    return id_token


def _allowed_algs(discovery: dict[str, Any]) -> list[str]:
    offered = discovery.get("id_token_signing_alg_values_supported") or ["RS256"]
    algs = [a for a in ID_TOKEN_ALGS if isinstance(offered, list) and a in offered]
    if not algs:
        raise _provider_fault("provider signs ID tokens with no asymmetric algorithm we accept")
    return algs


async def _verified_claims(client: httpx.AsyncClient, cache: ProviderCache,
                           tenant: OidcTenant, discovery: dict[str, Any], id_token: str,
                           pending: Pending) -> dict[str, Any]:
    algs = _allowed_algs(discovery)
    jwks_uri = str(discovery["jwks_uri"])
    try:
        try:
            token = jwt.decode(id_token, await cache.keys(client, jwks_uri), algorithms=algs)
        except InvalidKeyIdError:  # a key we do not know yet: the provider rotated its keys
            token = jwt.decode(id_token, await cache.keys(client, jwks_uri, fresh=True),
                               algorithms=algs)
    except JoseError as exc:
        raise _untrusted(f"id_token not verified ({type(exc).__name__})") from None
    except (ValueError, TypeError):
        raise _untrusted("id_token is malformed") from None
    claims = dict(token.claims)
    registry = jwt.JWTClaimsRegistry(leeway=LEEWAY_S, iss={"essential": True,
                                                            "value": tenant.config.issuer},
                                     sub={"essential": True}, exp={"essential": True},
                                     iat={"essential": True})
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise _untrusted(f"id_token claim refused ({exc.error}: {exc.description})") from None
    _check_audience(claims, tenant.config.client_id)
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(),
                                                             pending.nonce.encode()):
        raise _untrusted("id_token nonce differs from this sign-in's")
    return claims


def _check_audience(claims: dict[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        raise _untrusted("id_token audience is not this client")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise _untrusted("id_token has several audiences and names another authorized party")


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)][:MAX_GROUPS]
    return []


def map_identity(tenant: OidcTenant, claims: dict[str, Any]) -> Identity:
    """Subject, role and groups from verified claims, by the tenant's claim mapping."""
    cfg = tenant.config
    subject = claims.get(cfg.subject_claim)
    if not valid_id(subject):
        raise OidcRefused("oidc_subject_unusable", 403, "Your account at your organisation's "
                          "sign-in service has no identifier this site can use. Tell your "
                          "organisation's administrator.",
                          f"claim {cfg.subject_claim} missing or not a usable subject id")
    said = set(_strings(claims.get(cfg.role_claim))) if cfg.role_claim else set()
    matched = [r for r in (LEARNER, INSTRUCTOR, OPERATOR) if said & set(cfg.roles.get(r, ()))]
    if LEARNER in cfg.roles and not matched:  # learners listed: nobody else may come in
        raise OidcRefused("oidc_not_allowed", 403, "Your organisation has not given your "
                          "account access to this site. Ask its administrator.",
                          f"no value of claim {cfg.role_claim} is listed under roles")
    role = matched[-1] if matched else LEARNER  # the most privileged match wins
    groups = tuple(_strings(claims.get(cfg.group_claim))) if cfg.group_claim else ()
    return Identity(tenant.tenant_id, str(subject), role, groups, int(claims["exp"]))


async def finish(client: httpx.AsyncClient, cache: ProviderCache, tenant: OidcTenant,
                 code: str, pending: Pending) -> Identity:
    """The verified identity behind a callback's `code` (state already matched)."""
    discovery = await cache.discovery(client, tenant.config.issuer)
    id_token = await _exchange(client, tenant, discovery, code, pending)
    claims = await _verified_claims(client, cache, tenant, discovery, id_token, pending)
    return map_identity(tenant, claims)
