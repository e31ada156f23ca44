"""Readiness: do the services that verify our tokens accept the keys we sign with?

A secret rolled out to spawn_service but not to the orchestrator makes every spawn fail
there, and an OPERATOR_TOKEN the orchestrator refuses fails every call spawn_service makes
to it; this check names the secret (never its value) before a learner sees the failure.
"""

from __future__ import annotations

import httpx

from forge.config.settings import Settings
from forge.services.common.readiness import CheckFailed

SIGNED_HERE = ("SAT_HMAC_SECRET", "ET_HMAC_SECRET")
PEER_TIMEOUT_S = 1.5


async def peer_keys_check(settings: Settings, client: httpx.AsyncClient) -> str:
    """Fail when the orchestrator does not accept spawn_service's current SAT/ET keys
    (asked over the app's shared `client`)."""
    rings = {"SAT_HMAC_SECRET": settings.sat, "ET_HMAC_SECRET": settings.et}
    # The key ids are readiness detail, shown only to the operator token.
    auth = {"Authorization": "Bearer " + settings.operator.current.decode()}
    try:
        # Only its config check: its store, disk, bus and runtime are its own readiness.
        resp = await client.get(f"{settings.orchestrator_url}/readyz",
                                params={"check": "config"}, headers=auth,
                                timeout=PEER_TIMEOUT_S)
        if resp.status_code == 401:
            # Every call this service makes to the orchestrator and the scoreboard (lab
            # extend and delete, task checks, result pages, the dashboards) carries it.
            raise CheckFailed(
                "the orchestrator does not accept this service's OPERATOR_TOKEN (lab "
                "extend, delete, task checks and the result pages fail): roll the same "
                "OPERATOR_TOKEN out to both, see the runbook")
        keyring = resp.json()["checks"]["config"]["detail"]["keyring"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return "orchestrator not reachable; key agreement not checked"
    mismatched = [name for name in SIGNED_HERE
                  if rings[name].current_kid not in keyring.get(name, {}).get("accepted", [])]
    if mismatched:
        raise CheckFailed(
            "the orchestrator does not accept this service's current "
            + ", ".join(mismatched)
            + " (key ids differ: roll the same secret out to both, see the runbook)"
        )
    return "orchestrator accepts the current SAT and ET keys"
