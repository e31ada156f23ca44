"""Which OPERATOR_TOKEN spawn_service accepts: one of its own ring that the orchestrator
still accepts too, and any the orchestrator accepts.

The rotation order operators follow rolls OPERATOR_TOKEN out to the orchestrator and the
scoreboard, never to spawn_service. Left alone, a spawn_service keeps the old token and
goes on accepting it after the operator retired it (perhaps because it leaked): its /ops
console (every tenant's labs, reprocessing events), its readiness details, restarting its
subscriber. And it never learns the new one, so after a rotation done by the book no
operator token opens those. So spawn_service follows the orchestrator both ways: a token
of its own ring whose key id the orchestrator no longer lists is refused, and so is an
/ops session opened with it; a token the orchestrator accepts is accepted, checked against
the orchestrator's full-length digests of its tokens (``derive_verifier``; never the
tokens, and not the 16-hex-digit key ids, which would be a 64-bit target), taken only with
the orchestrator's HMAC over them by the SAT keyring, which whatever else might answer at
ORCHESTRATOR_URL lacks.

The orchestrator's accepted key ids and digests come from its config readiness, asked with
a service token at most every ``REFRESH_S`` when an operator credential is checked, and
from every ``peer_keys`` check; for a token spawn_service does not hold, on an answer at
most ``VOUCH_FRESH_S`` old (asked again if older), so a token the orchestrator retires
stops here at once. Until the orchestrator has answered once, spawn_service's own ring
alone decides (as before); after that its last answer stands for spawn_service's own
tokens while it cannot be reached, and vouches for no other.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import httpx

from forge.config.keyring import derive_kid, derive_verifier
from forge.config.settings import Settings
from forge.services.common.http_client import SharedHttpClient
from forge.services.common.peer_keyring import (
    accepted_kids,
    accepted_verifiers,
    orchestrator_keyring,
)
from forge.services.spawn.peers import credentials

log = logging.getLogger("forge.spawn")

REFRESH_S = 10.0
# A token this service does not hold is taken only on an answer at most this old: the
# orchestrator retiring it must stop it here at once, and an orchestrator out of reach
# vouches for nothing (its last answer stands for this service's own tokens alone).
VOUCH_FRESH_S = 2.0
MAX_KIDS = 16  # a ring holds three keys; a longer list is not the orchestrator's answer


class OperatorKeys:
    """The orchestrator's accepted OPERATOR_TOKEN key ids and digests as last seen (one per
    process)."""

    def __init__(self, settings: Settings, http: SharedHttpClient) -> None:
        self._settings = settings
        self._http = http
        self._accepted: frozenset[str] | None = None  # None: the orchestrator never said
        self._verifiers: frozenset[str] = frozenset()
        self._asked_at = -math.inf
        self._answered_at = -math.inf
        self._warned: str | None = None  # the current kid last reported as retired

    def note(self, keyring: Mapping[str, Any]) -> None:
        """Take the orchestrator's keyring detail (its config readiness): an answer that is
        not a list of key ids changes nothing."""
        name = self._settings.operator.name
        accepted = accepted_kids(keyring, name)
        if accepted is None or not 0 < len(accepted) <= MAX_KIDS:
            return
        verifiers = accepted_verifiers(keyring, name, self._settings.sat)
        self._accepted = accepted
        # An orchestrator of an earlier release lists no digests: its tokens are not taken.
        self._verifiers = (verifiers if verifiers is not None and len(verifiers) <= MAX_KIDS
                           else frozenset())
        self._asked_at = self._answered_at = time.monotonic()
        mine = self._settings.operator.current_kid
        if mine not in self._accepted and self._warned != mine:
            self._warned = mine
            log.warning("the orchestrator no longer accepts this service's OPERATOR_TOKEN "
                        "(key id %s): it is refused here too, and the orchestrator's own "
                        "is accepted here; roll that out to spawn_service at its next "
                        "restart", mine)

    async def refresh(self, max_age_s: float = REFRESH_S) -> None:
        """Ask the orchestrator again when the last answer is older than ``max_age_s`` (once
        per such period, whether or not it answers)."""
        if time.monotonic() - self._asked_at < max_age_s:
            return
        self._asked_at = time.monotonic()
        try:
            keyring = await orchestrator_keyring(self._settings, self._http.client,
                                                 credentials(self._settings))
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return  # unreachable: the last answer stands
        if keyring is not None:
            self.note(keyring)

    def allows_kid(self, kid: str) -> bool:
        """Whether a token with key id ``kid`` is in force as far as this process knows:
        until the orchestrator answered, only those of this service's own ring (an /ops
        session opened with a token the orchestrator vouched for, before a restart of this
        service, waits for its word)."""
        if self._accepted is None:
            return kid in self._settings.operator.kids
        return kid in self._accepted

    async def allows(self, token: str) -> bool:
        """Whether ``token`` (a secret of this service's ring) is still in force."""
        await self.refresh()
        return self.allows_kid(derive_kid(token.encode()))

    async def vouches(self, token: str) -> bool:
        """Whether the orchestrator accepts ``token`` (a presented secret this service's own
        ring does not hold), on an answer at most VOUCH_FRESH_S old: its digest is compared
        in constant time with every one the orchestrator listed."""
        await self.refresh(VOUCH_FRESH_S)
        digest = derive_verifier(token.encode())
        found = False
        for known in self._verifiers:
            if hmac.compare_digest(digest, known):
                found = True
        fresh = time.monotonic() - self._answered_at <= VOUCH_FRESH_S
        return found and fresh and self.allows_kid(derive_kid(token.encode()))
