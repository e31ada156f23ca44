"""Operator authentication: `Authorization: Bearer <OPERATOR_TOKEN>`, keyring-aware."""

from __future__ import annotations

from fastapi import Request

from forge.config.keyring import HmacKeyring
from forge.errors import ForgeError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="forge-operator"'}


def bearer_token(request: Request) -> str | None:
    """The bearer credential of a request, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def check_operator(request: Request, ring: HmacKeyring) -> None:
    """Raise 401 unless the request carries a current, previous or next operator token."""
    token = bearer_token(request)
    if token is None:
        raise ForgeError("unauthorized", 401, "operator token required", headers=_CHALLENGE)
    if not ring.matches(token):
        raise ForgeError("unauthorized", 401, "operator token not accepted", headers=_CHALLENGE)
