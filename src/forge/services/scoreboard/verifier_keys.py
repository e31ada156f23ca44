"""Readiness: does the scoreboard accept the keys the labs it scores were signed with?

The scoreboard checks each lab's SAT and ET again when it scores it. A scoreboard rolled
out with another SAT or ET secret than the rest refuses every completion (each is kept as
a failed event), yet its store, disk and bus are fine, so its /readyz said 200. spawn_service
signs with the orchestrator's current keys (its own `peer_keys` check), so the scoreboard
must accept those: this check compares key ids (never secrets) with the orchestrator's,
asked with a proof of OPERATOR_TOKEN (`forge.services.common.peer_proof`; the token itself
never leaves), which the rotation order rolls out to both.
"""

from __future__ import annotations

import httpx

from forge.config.settings import Settings
from forge.services.common.http_client import SharedHttpClient
from forge.services.common.peer_check import PacedCheck
from forge.services.common.peer_keyring import ORCHESTRATOR, current_kid, orchestrator_keyring
from forge.services.common.peer_proof import keyring_read, mint_proof
from forge.services.common.readiness import CheckFailed

AGREED_FOR_S = 30.0  # an agreement found is trusted this long before the orchestrator is asked
RETRY_S = 1.0  # any other outcome: asked again after this long (anyone may run readiness)
AGREED = "accepts the orchestrator's current SAT and ET keys"


def verifier_keys(settings: Settings, http: SharedHttpClient) -> PacedCheck:
    """The ``peer_keys`` check, paced (`forge.services.common.peer_check`): `forge up` and
    load balancers run readiness every few seconds, and keys change only when a service
    restarts, so an idle orchestrator is not asked each time."""
    return PacedCheck(lambda: verifier_keys_check(settings, http.client),
                      lambda detail: detail == AGREED, AGREED_FOR_S, RETRY_S)


async def verifier_keys_check(settings: Settings, client: httpx.AsyncClient) -> str:
    """Fail when the orchestrator's current SAT or ET key is not one the scoreboard accepts,
    naming which (or when the orchestrator refuses this service's OPERATOR_TOKEN)."""
    try:
        keyring = await orchestrator_keyring(
            settings, client, [mint_proof(settings.operator, keyring_read(ORCHESTRATOR))])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return "orchestrator not reachable; key agreement not checked"
    if keyring is None:
        raise CheckFailed(
            "the orchestrator does not accept this service's OPERATOR_TOKEN, so the keys "
            "could not be compared: roll the same OPERATOR_TOKEN out to both, see the runbook")
    missing = [ring.name for ring in (settings.sat, settings.et)
               if current_kid(keyring, ring.name) not in ring.kids]
    if missing:
        raise CheckFailed(
            "this service does not accept the orchestrator's current " + ", ".join(missing)
            + " (key ids differ: completions of labs signed with it are refused; roll the "
            "same secret out to both, see the runbook)")
    return AGREED
