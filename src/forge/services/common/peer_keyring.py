"""The orchestrator's key ids, as its config readiness lists them: what a service compares
its own secrets with (spawn_service and the scoreboard, `peer_keys` readiness)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from forge.config.settings import Settings

PEER_TIMEOUT_S = 1.5


async def orchestrator_keyring(settings: Settings, client: httpx.AsyncClient,
                               credentials: Sequence[str]) -> dict[str, Any] | None:
    """Per secret, the key id the orchestrator signs with and those it accepts (readiness
    detail, shown only to an operator credential), asked with the first of
    ``credentials`` it does not refuse; None when it refuses them all. httpx.HTTPError
    when it cannot be reached; ValueError, KeyError or TypeError for an answer of another
    shape."""
    for credential in credentials:
        # Only its config check: its store, disk, bus and runtime are its own readiness.
        resp = await client.get(f"{settings.orchestrator_url}/readyz",
                                params={"check": "config"},
                                headers={"Authorization": "Bearer " + credential},
                                timeout=PEER_TIMEOUT_S)
        if resp.status_code != 401:
            keyring: dict[str, Any] = resp.json()["checks"]["config"]["detail"]["keyring"]
            return keyring
    return None
