"""Operator authentication: `Authorization: Bearer <OPERATOR_TOKEN>`, keyring-aware, or a
service token of spawn_service's.

spawn_service calls the orchestrator, lab nodes and the scoreboard for learners (lab
extend and delete, task checks, result pages, dashboards) and for its `/ops` page. It
signs those calls with a one-minute service token from the SAT keyring rather than with
OPERATOR_TOKEN: the rotation order operators follow rolls the SAT secret out to every
service but OPERATOR_TOKEN only to the orchestrator and the scoreboard, and a
spawn_service left with the old OPERATOR_TOKEN lost every such call. Whoever holds the
SAT secret (the three services) already holds OPERATOR_TOKEN too.

A service token is good for the one request it was made for: the service it was sent to,
its method, its target (path and query, exactly as sent) and a digest of its body.
Whatever answers at a service's address in its place (a local user who took the port while
the service restarted) can send that same request to that service again within the
minute, and nothing else with it. Services call each other directly: a proxy that rewrote
paths between them would have its calls refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from forge.config.settings import Settings
from forge.errors import ForgeError
from forge.services.common.peer_proof import ProofVerifier, is_proof, keyring_read
from forge.tokens import SERVICE, TokenError, mint_token, verify_token

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="forge-operator"'}
SPAWN_SERVICE = "spawn_service"
SERVICE_CALLERS = frozenset({SPAWN_SERVICE})


def bearer_token(request: Request) -> str | None:
    """The bearer credential of a request, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


@dataclass(frozen=True)
class RequestTarget:
    """What a service token is bound to: the service it is for (its name, e.g.
    "orchestrator"), the method, the target (raw path and query, as sent: no ``?`` when the
    query is empty) and the SHA-256 of the body (hex)."""

    service: str
    method: str
    target: str
    body_sha256: str

    @classmethod
    def of(cls, service: str, method: str, target: str, body: bytes) -> RequestTarget:
        return cls(service, method.upper(), target.removesuffix("?"),
                   hashlib.sha256(body).hexdigest())


async def request_target(request: Request, service: str) -> RequestTarget:
    """The target of an incoming request to ``service``, as a service token binds it (reads
    the body, bounded by the service's input limit and kept for the route)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    target = raw + (b"?" + query if query else b"")
    return RequestTarget.of(service, request.method, target.decode("latin-1"),
                            await request.body())


def service_token(settings: Settings, target: RequestTarget,
                  caller: str = SPAWN_SERVICE) -> str:
    """A bearer credential for one of ``caller``'s calls to another service: that request
    to that service alone, for one minute."""
    return mint_token(settings.sat, SERVICE, {
        "sub": caller, "svc": target.service, "htm": target.method, "htu": target.target,
        "bh": target.body_sha256})


def operator_credential(token: str, settings: Settings, target: RequestTarget | None) -> bool:
    """Whether ``token`` is a current, previous or next OPERATOR_TOKEN (compared in constant
    time) or a valid service token of a known caller made for this very request
    (``target``, every part equal; None: no service token is taken)."""
    return settings.operator.matches(token) or (
        target is not None and _service_credential(token, settings, target))


def _service_credential(token: str, settings: Settings, target: RequestTarget) -> bool:
    """Whether ``token`` is a valid service token of a known caller made for ``target``."""
    try:
        claims = verify_token(settings.sat, SERVICE, token)
    except TokenError:
        return False
    made_for = (claims.get("svc"), claims.get("htm"), claims.get("htu"), claims.get("bh"))
    return (claims.get("sub") in SERVICE_CALLERS
            and made_for == (target.service, target.method, target.target, target.body_sha256))


class OperatorKeyFilter(Protocol):
    """A service's second word on an OPERATOR_TOKEN: spawn_service follows the
    orchestrator, which the rotation order rolls the token out to
    (`forge.services.spawn.operator_keys`)."""

    async def allows(self, token: str) -> bool:
        """Whether ``token``, a secret of this service's own ring, is still in force."""
        ...

    async def vouches(self, token: str) -> bool:
        """Whether ``token``, not of this service's own ring, is one the peer accepts."""
        ...


async def carries_operator(request: Request, token: str, settings: Settings,
                           service: str) -> bool:
    """Whether bearer ``token`` is an operator credential (``operator_credential``) for this
    request to ``service``. The body is read, to bind a service token, only when an
    OPERATOR_TOKEN did not already settle it."""
    return settings.operator.matches(token) or _service_credential(
        token, settings, await request_target(request, service))


async def check_operator(request: Request, settings: Settings, service: str) -> None:
    """Raise 401 unless the request carries an operator credential (``operator_credential``)
    for ``service`` (the name of the service answering)."""
    token = bearer_token(request)
    if token is None:
        raise ForgeError("unauthorized", 401, "operator token required", headers=_CHALLENGE)
    if not await carries_operator(request, token, settings, service):
        raise ForgeError("unauthorized", 401, "operator token not accepted", headers=_CHALLENGE)


async def require_operator(request: Request, settings: Settings, service: str,
                           keys: OperatorKeyFilter | None) -> None:
    """``check_operator`` where ``keys`` is None. With ``keys``: an OPERATOR_TOKEN of this
    service's ring that they say was retired elsewhere is refused as any wrong token is
    (401: nothing tells its holder why), and a token they vouch for is accepted."""
    if keys is None:
        await check_operator(request, settings, service)
        return
    token = bearer_token(request)
    if token is None:
        raise ForgeError("unauthorized", 401, "operator token required", headers=_CHALLENGE)
    service_token = not settings.operator.matches(token) and _service_credential(
        token, settings, await request_target(request, service))
    if not service_token and not await operator_token_accepted(token, settings, keys):
        raise ForgeError("unauthorized", 401, "operator token not accepted", headers=_CHALLENGE)


async def operator_token_accepted(token: str, settings: Settings,
                                  keys: OperatorKeyFilter | None) -> bool:
    """Whether ``token`` is an OPERATOR_TOKEN in force here: one of this service's ring
    that ``keys`` (if any) still allow, or one they vouch for. Never a service token: the
    /ops sign-in takes this alone, as a session is for a person."""
    if settings.operator.matches(token):
        return keys is None or await keys.allows(token)
    return keys is not None and await keys.vouches(token)


async def require_keyring_reader(request: Request, settings: Settings, service: str,
                                 keys: OperatorKeyFilter | None,
                                 proofs: ProofVerifier) -> None:
    """``require_operator``, or a peer's proof for reading the key ids of ``service`` (this
    one: `forge.services.common.peer_proof`) made with a SAT secret of this service, or
    with one of its OPERATOR_TOKENs that ``keys`` still allow. A proof is never an operator
    credential anywhere else."""
    token = bearer_token(request)
    if token is None or not is_proof(token):
        await require_operator(request, settings, service, keys)
        return
    purpose = keyring_read(service)
    if proofs.verify(token, (settings.sat,), purpose) is not None:
        return
    secret = proofs.verify(token, (settings.operator,), purpose)
    if secret is not None and (keys is None or await keys.allows(secret.decode())):
        return
    raise ForgeError("unauthorized", 401, "operator token not accepted", headers=_CHALLENGE)
