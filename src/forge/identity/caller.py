"""Resolve the calling learner from a verified credential, never from an unverified field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select

from forge.config.settings import Settings
from forge.errors import ForgeError
from forge.identity.apikeys import verify_api_key
from forge.identity.names import valid_id
from forge.identity.origin import UNSAFE_METHODS, same_origin
from forge.store.consumed_tokens import SqlReplayStore
from forge.store.db import Database
from forge.store.models import ApiKey, ReplayJti
from forge.store.prepared import Prepared
from forge.tokens import SESSION, TokenError, verify_token

SESSION_COOKIE = "forge_session"
# How a receipt's learner was established when it was minted: the signed-in buyer ("caller"),
# a learner the checkout created ("new"), or the operator ("operator"). A receipt whose
# subject carries none of these (minted when checkout let anyone name anyone) is never
# taken as that learner's identity.
SUBJECT_PROOFS = ("caller", "new", "operator")
# A signed-out session's token id is kept (until the token would expire anyway) under this
# kind among the consumed token ids: every replica then refuses the cookie.
SIGNED_OUT = "SESOUT"
# Claim of a session opened with a sign-in (API) key: that key's id. The session ends when
# the key is revoked (`forge apikey revoke`, or the learner making a new one), so a key that
# leaked stops working in the browsers it already signed in, not only at the next sign-in.
OPENED_WITH_KEY = "akid"
# Whether a token id was consumed, asked on every request a session cookie signs in (the lab
# page polls its scenario every few hundred ms): a one-column point read through the driver
# (forge.store.prepared), not the ORM's get, which loads and maps the whole row into an
# identity map for a yes/no.
_JTIS, _KEYS = ReplayJti.__table__.c, ApiKey.__table__.c
_CONSUMED = Prepared(select(_JTIS.jti).where(_JTIS.jti == bindparam("jti")))
# The same for a session opened with a key, with whether that key is still live for its
# learner: one statement (one round trip on PostgreSQL) per request, as for any session.
_KEY_SESSION = Prepared(select(
    select(_JTIS.jti).where(_JTIS.jti == bindparam("jti")).exists().label("consumed"),
    select(_KEYS.key_id).where(
        _KEYS.key_id == bindparam("key_id"), _KEYS.revoked_at.is_(None),
        _KEYS.tenant_id == bindparam("tenant_id"), _KEYS.subject == bindparam("subject"),
    ).exists().label("live")))


class AuthError(ForgeError):
    """The caller could not be identified; callers that must not answer (a websocket) catch
    this category, the services map it to HTTP like any ForgeError."""


@dataclass(frozen=True)
class Caller:
    """A verified learner: tenant, subject, how they proved it, any scenario scope, and the
    API key that signed them in (directly or through a session it opened), whose revocation
    must end whatever they open with it (a lab's access link too)."""

    tenant_id: str
    subject: str
    via: str
    scenario_scope: str | None = None
    key_id: str | None = None

    def owns(self, tenant_id: str, subject: str) -> bool:
        """True when a record of (tenant, subject) belongs to this caller."""
        return self.tenant_id == tenant_id and self.subject == subject

    def may_see(self, scenario_id: str) -> bool:
        """A scenario-scoped session may only see its own scenario."""
        return self.scenario_scope is None or self.scenario_scope == scenario_id

    def whole_account(self) -> Caller:
        """This caller when it speaks for the learner's whole account; a session opened from
        one lab's access link may use only that lab (403 `lab_session_only`): it must not
        start labs (using the learner's attempts), buy, join cohorts or list the account."""
        if self.scenario_scope is not None:
            raise AuthError("lab_session_only", 403,
                            "this session was opened from one lab's access link and can use "
                            "only that lab; sign in with your API key or sign-in key")
        return self


def _api_key_from(headers: Mapping[str, str]) -> str | None:
    explicit = headers.get("x-api-key")
    if explicit:
        return explicit.strip()
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip().startswith("fgk_"):
        return value.strip()
    return None


def receipt_subject(claims: Mapping[str, Any] | None) -> str | None:
    """The learner a verified receipt identifies, or None (no subject, or an unproven one)."""
    if not claims or not valid_id(claims.get("sub")):
        return None
    if claims.get("sub_proof") not in SUBJECT_PROOFS:
        return None
    return str(claims["sub"])


def caller_from_session(settings: Settings, token: str) -> Caller | None:
    """The caller of a valid session cookie, else None."""
    claims = session_claims(settings, token)
    return None if claims is None else _session_caller(claims)


def _session_caller(claims: Mapping[str, Any]) -> Caller:
    scope = str(claims["scope"])
    scenario = scope.removeprefix("scenario:") if scope.startswith("scenario:") else None
    key_id = claims.get(OPENED_WITH_KEY)
    return Caller(str(claims["tenant_id"]), str(claims["sub"]), "session", scenario,
                  key_id if isinstance(key_id, str) else None)


def session_claims(settings: Settings, token: str) -> dict[str, Any] | None:
    """The claims of a valid session token (signature, expiry), revoked or not; else None."""
    try:
        return verify_token(settings.sat, SESSION, token)
    except TokenError:
        return None


def revoke_session(db: Database, claims: Mapping[str, Any]) -> None:
    """Sign the session out everywhere: its token id is refused from now on. Idempotent."""
    expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    SqlReplayStore(db).consume(str(claims["jti"]), SIGNED_OUT, expires)


def session_revoked(db: Database, claims: Mapping[str, Any]) -> bool:
    """True once the session was signed out (a token without an id counts as signed out),
    or once the sign-in key it was opened with (``OPENED_WITH_KEY``) is no longer live."""
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        return True
    if OPENED_WITH_KEY not in claims:
        with db.read() as sess:
            return _CONSUMED.execute(sess.connection(), {"jti": jti}).first() is not None
    key_id = claims[OPENED_WITH_KEY]
    if not isinstance(key_id, str):
        return True
    with db.read() as sess:
        row = _KEY_SESSION.execute(sess.connection(), {
            "jti": jti, "key_id": key_id, "tenant_id": str(claims.get("tenant_id")),
            "subject": str(claims.get("sub"))}).one()
    return bool(row.consumed) or not row.live


def resolve_caller(
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    settings: Settings,
    db: Database,
    receipt_claims: Mapping[str, Any] | None = None,
    *,
    method: str,
) -> Caller:
    """First match wins: API key, session cookie, receipt with a subject, dev-only headers.
    A state-changing `method` authenticated by the session cookie must come from this site
    (403 `cross_site_request`): the browser sends the cookie whoever made the page."""
    presented_key = _api_key_from(headers)
    if presented_key is not None:
        record = verify_api_key(db, presented_key)
        if record is None:
            raise AuthError("invalid_api_key", 401, "API key is unknown or revoked")
        return Caller(record.tenant_id, record.subject, "api_key", key_id=record.key_id)
    session = cookies.get(SESSION_COOKIE)
    if session:
        claims = session_claims(settings, session)  # verified once
        caller = _session_caller(claims) if claims is not None else None
        if caller is not None and claims is not None and not session_revoked(db, claims):
            if method.upper() in UNSAFE_METHODS and not same_origin(headers):
                raise AuthError("cross_site_request", 403,
                                "Origin: a request signed in by the session cookie must come "
                                "from a page of this site; API clients send an API key")
            return caller
    receipt_learner = receipt_subject(receipt_claims)
    if receipt_claims and receipt_learner is not None:
        return Caller(str(receipt_claims["tenant_id"]), receipt_learner, "receipt")
    if settings.env.is_dev and settings.dev_allow_headers:
        subject, tenant = headers.get("x-client-id"), headers.get("x-tenant-id")
        if subject or tenant:
            if not valid_id(subject):
                raise AuthError("invalid_client_id", 401,
                                "x-client-id: 1-128 chars of [A-Za-z0-9._@:-]")
            if not valid_id(tenant):
                raise AuthError("invalid_tenant_id", 401,
                                "x-tenant-id: 1-128 chars of [A-Za-z0-9._@:-]")
            return Caller(str(tenant), str(subject), "dev_headers")
    raise AuthError(
        "credentials_required", 401,
        "sign in: send an API key, a session cookie or a receipt naming the learner",
    )
