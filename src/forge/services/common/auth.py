"""Operator authentication: `Authorization: Bearer <OPERATOR_TOKEN>`, keyring-aware, or a
service token of spawn_service's.

spawn_service calls the orchestrator, lab nodes and the scoreboard for learners (lab
extend and delete, task checks, result pages, dashboards) and for its `/ops` page. It
signs those calls with a one-minute service token from the SAT keyring rather than with
OPERATOR_TOKEN: the rotation order operators follow rolls the SAT secret out to every
service but OPERATOR_TOKEN only to the orchestrator and the scoreboard, and a
spawn_service left with the old OPERATOR_TOKEN lost every such call. Whoever holds the
SAT secret (the three services) already holds OPERATOR_TOKEN too.
"""

from __future__ import annotations

from typing import Protocol

from fastapi import Request

from forge.config.settings import Settings
from forge.errors import ForgeError
from forge.services.common.peer_proof import KEYRING_READ, ProofVerifier, is_proof
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


def service_token(settings: Settings, caller: str = SPAWN_SERVICE) -> str:
    """A bearer credential for one of ``caller``'s calls to another service (one minute)."""
    return mint_token(settings.sat, SERVICE, {"sub": caller})


def operator_credential(token: str, settings: Settings) -> bool:
    """Whether ``token`` is a current, previous or next OPERATOR_TOKEN (compared in constant
    time) or a valid service token of a known caller."""
    if settings.operator.matches(token):
        return True
    try:
        claims = verify_token(settings.sat, SERVICE, token)
    except TokenError:
        return False
    return claims.get("sub") in SERVICE_CALLERS


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


def check_operator(request: Request, settings: Settings) -> None:
    """Raise 401 unless the request carries an operator credential (``operator_credential``)."""
    token = bearer_token(request)
    if token is None:
        raise ForgeError("unauthorized", 401, "operator token required", headers=_CHALLENGE)
    if not operator_credential(token, settings):
        raise ForgeError("unauthorized", 401, "operator token not accepted", headers=_CHALLENGE)


async def require_operator(request: Request, settings: Settings,
                           keys: OperatorKeyFilter | None) -> None:
    """``check_operator`` where ``keys`` is None. With ``keys``: an OPERATOR_TOKEN of this
    service's ring that they say was retired elsewhere is refused as any wrong token is
    (401: nothing tells its holder why), and a token they vouch for is accepted."""
    if keys is None:
        check_operator(request, settings)
        return
    token = bearer_token(request)
    if token is None:
        raise ForgeError("unauthorized", 401, "operator token required", headers=_CHALLENGE)
    service_token = not settings.operator.matches(token) and operator_credential(token, settings)
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


async def require_keyring_reader(request: Request, settings: Settings,
                                 keys: OperatorKeyFilter | None,
                                 proofs: ProofVerifier) -> None:
    """``require_operator``, or a peer's proof for reading the key ids in force
    (`forge.services.common.peer_proof`): made with a SAT secret of this service, or with
    one of its OPERATOR_TOKENs that ``keys`` still allow. A proof is never an operator
    credential anywhere else."""
    token = bearer_token(request)
    if token is None or not is_proof(token):
        await require_operator(request, settings, keys)
        return
    if proofs.verify(token, (settings.sat,), KEYRING_READ) is not None:
        return
    secret = proofs.verify(token, (settings.operator,), KEYRING_READ)
    if secret is not None and (keys is None or await keys.allows(secret.decode())):
        return
    raise ForgeError("unauthorized", 401, "operator token not accepted", headers=_CHALLENGE)
