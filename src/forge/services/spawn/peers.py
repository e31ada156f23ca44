"""Readiness: do the services that verify our tokens accept the keys we sign with?

A secret rolled out to spawn_service but not to the orchestrator makes every spawn fail
there, and a SAT secret the orchestrator refuses also fails every call spawn_service makes
to it (signed with a service token of that keyring); this check names the secret (never
its value) before a learner sees the failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from forge.config.settings import Settings
from forge.errors import ForgeError
from forge.services.common.http_client import SharedHttpClient
from forge.services.common.peer_check import PacedCheck
from forge.services.common.peer_keyring import ORCHESTRATOR, accepted_kids, orchestrator_keyring
from forge.services.common.peer_proof import keyring_read, mint_proof
from forge.services.common.readiness import CheckFailed

AGREED = "orchestrator accepts the current SAT and ET keys"
AGREED_FOR_S = 5.0  # an agreement found stands this long (anyone may run readiness)
RETRY_S = 1.0  # any other outcome: asked again after this long


def credentials(settings: Settings) -> tuple[str, str]:
    """What spawn_service asks the orchestrator's key ids with: a proof of its SAT secret,
    as every call it makes is signed with that keyring; when that is refused, a proof of
    its OPERATOR_TOKEN, to name which key differs. Proofs, never the token nor a service
    token (`forge.services.common.peer_proof`): whatever answers at ORCHESTRATOR_URL gets
    nothing it could open anything else with."""
    purpose = keyring_read(ORCHESTRATOR)
    return mint_proof(settings.sat, purpose), mint_proof(settings.operator, purpose)


async def peer_keys_check(settings: Settings, client: httpx.AsyncClient,
                          seen: Callable[[Mapping[str, Any]], None] | None = None) -> str:
    """Fail when the orchestrator does not accept spawn_service's current SAT/ET keys
    (asked over the app's shared `client`), naming which; ``seen`` is given the
    orchestrator's key ids when it answered (``operator_keys``)."""
    try:
        keyring = await orchestrator_keyring(settings, client, credentials(settings))
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return "orchestrator not reachable; key agreement not checked"
    if keyring is None:
        # Every call this service makes to the orchestrator and the scoreboard (lab
        # extend and delete, task checks, result pages, the dashboards) carries it.
        raise CheckFailed(
            "the orchestrator does not accept this service's SAT_HMAC_SECRET (spawns, lab "
            "extend, delete, task checks and the result pages fail): roll the same secret "
            "out to both, see the runbook")
    if seen is not None:
        seen(keyring)
    mismatched = [ring.name for ring in (settings.sat, settings.et)
                  if ring.current_kid not in (accepted_kids(keyring, ring.name) or ())]
    if mismatched:
        raise CheckFailed(
            "the orchestrator does not accept this service's current "
            + ", ".join(mismatched)
            + " (key ids differ: roll the same secret out to both; in a rotation, every "
            "service first gets the new value as <NAME>_NEXT, and one made current keeps the "
            "old as <NAME>_PREVIOUS: see the runbook)"
        )
    operator = accepted_kids(keyring, settings.operator.name)
    if operator is not None and settings.operator.current_kid not in operator:
        # Not a failure: learners are served as ever; only this service's operator
        # credential is refused (forge.services.spawn.operator_keys).
        return (AGREED + "; it no longer accepts this "
                "service's OPERATOR_TOKEN, which is refused here too; the orchestrator's "
                "OPERATOR_TOKEN is accepted here (roll it out to spawn_service at its next "
                "restart)")
    return AGREED


def paced_peer_keys(settings: Settings, http: SharedHttpClient,
                    seen: Callable[[Mapping[str, Any]], None] | None = None) -> PacedCheck:
    """``peer_keys_check`` paced (`forge.services.common.peer_check`): an anonymous flood
    of readiness runs asks the orchestrator once a second at most."""
    return PacedCheck(lambda: peer_keys_check(settings, http.client, seen),
                      lambda detail: detail.startswith(AGREED), AGREED_FOR_S, RETRY_S)


KEYS_REFUSED_MAX_AGE_S = 10.0


async def keys_refused(check: PacedCheck | None) -> ForgeError | None:
    """503 keys_not_agreed while the orchestrator refuses the keys this service signs
    with (the ``peer_keys`` check's last finding, at most KEYS_REFUSED_MAX_AGE_S old): a
    spawn accepted then would fail there, leaving the learner a failed lab. Between the
    steps of a rotation done without ``_NEXT`` (spawn_service rolled out first, as the
    runbook orders), learners are told to try again; nothing is counted or reserved. No
    finding, or an orchestrator out of reach: None (the orchestrator still decides)."""
    if check is None or await check.standing_failure(KEYS_REFUSED_MAX_AGE_S) is None:
        return None
    return ForgeError("keys_not_agreed", 503,
                      "labs cannot start for a moment: the platform's services are being "
                      "reconfigured; try again in a minute", headers={"Retry-After": "30"})
