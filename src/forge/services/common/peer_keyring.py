"""The orchestrator's key ids, as its config readiness lists them: what a service compares
its own secrets with (spawn_service and the scoreboard, `peer_keys` readiness)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from forge.config.keyring import HmacKeyring, list_mac_valid
from forge.config.settings import Settings

PEER_TIMEOUT_S = 1.5
PEER_DEADLINE_S = 3.0  # the whole answer, where PEER_TIMEOUT_S bounds each read
MAX_ANSWER_BYTES = 64 * 1024  # a config detail is about 2 KiB
_HEX64 = re.compile(r"[0-9a-f]{64}")
# The service whose key ids its peers read (its name, forge.services.orchestrator.app.NAME).
ORCHESTRATOR = "orchestrator"
# What the orchestrator's HMAC over its OPERATOR_TOKEN digests is taken under.
VERIFIERS_DOMAIN = b"frostgate-forge/operator-verifiers/v1:"


async def orchestrator_keyring(settings: Settings, client: httpx.AsyncClient,
                               credentials: Sequence[str]) -> dict[str, Any] | None:
    """Per secret, the key id the orchestrator signs with and those it accepts (readiness
    detail, shown only to an operator credential or a peer's proof), asked with the first of
    ``credentials`` it does not refuse; None when it refuses them all. httpx.HTTPError
    when it cannot be reached; ValueError, KeyError or TypeError for an answer of another
    shape, over ``MAX_ANSWER_BYTES``, or not whole within ``PEER_DEADLINE_S`` (whatever
    answers at that address is read no further: an operator's request waits on it)."""
    for credential in credentials:
        try:
            async with asyncio.timeout(PEER_DEADLINE_S):
                status, body = await _ask(settings, client, credential)
        except TimeoutError:
            raise ValueError("the orchestrator's answer did not arrive in time") from None
        if status != 401:
            keyring = json.loads(body)["checks"]["config"]["detail"]["keyring"]
            if not isinstance(keyring, dict):
                raise ValueError("the orchestrator's answer lists no keyring")
            return keyring
    return None


async def _ask(settings: Settings, client: httpx.AsyncClient,
               credential: str) -> tuple[int, bytes]:
    """(status, body) of the orchestrator's config readiness, the body at most
    MAX_ANSWER_BYTES (ValueError beyond)."""
    # Only its config check: its store, disk, bus and runtime are its own readiness.
    async with client.stream("GET", f"{settings.orchestrator_url}/readyz",
                             params={"check": "config"},
                             headers={"Authorization": "Bearer " + credential},
                             timeout=PEER_TIMEOUT_S) as resp:
        body = bytearray()
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise ValueError("the orchestrator's answer is too large")
        return resp.status_code, bytes(body)


def accepted_kids(keyring: Mapping[str, Any], name: str) -> frozenset[str] | None:
    """The key ids the orchestrator accepts for secret ``name`` (None: not a list of key
    ids in its answer)."""
    ring = keyring.get(name)
    accepted = ring.get("accepted") if isinstance(ring, Mapping) else None
    if not isinstance(accepted, list) or not all(isinstance(k, str) for k in accepted):
        return None
    return frozenset(accepted)


def accepted_verifiers(keyring: Mapping[str, Any], name: str,
                       signer: HmacKeyring) -> frozenset[str] | None:
    """The ``derive_verifier`` digests of the secrets the orchestrator accepts for ``name``,
    when its answer lists them with a valid HMAC by a secret of ``signer`` (the SAT
    keyring both hold); None otherwise (no list, another shape, no or a wrong HMAC)."""
    ring = keyring.get(name)
    if not isinstance(ring, Mapping):
        return None
    found = ring.get("verifiers")
    if not isinstance(found, list) or not all(
            isinstance(v, str) and _HEX64.fullmatch(v) for v in found):
        return None
    if not list_mac_valid(signer, VERIFIERS_DOMAIN, found, ring.get("verifiers_mac")):
        return None
    return frozenset(found)


def current_kid(keyring: Mapping[str, Any], name: str) -> str | None:
    """The key id the orchestrator signs with for secret ``name`` (None: not in its answer)."""
    ring = keyring.get(name)
    current = ring.get("current") if isinstance(ring, Mapping) else None
    return current if isinstance(current, str) else None
