"""A proof of holding a secret, good for one purpose for one minute, sent to a peer instead
of the secret or a token that opens more.

spawn_service and the scoreboard read the orchestrator's key ids (its config readiness)
every few seconds. They used to ask with a service token or OPERATOR_TOKEN itself: while
the orchestrator restarted (step 3 of the rotation order), a local user who took its port
received OPERATOR_TOKEN, or a one-minute service token every service accepts as an
operator's. What they send now is an HMAC, with a secret of the SAT or OPERATOR_TOKEN
keyring, over the purpose (which names the service asked), a time and a random nonce:
whoever receives it learns no secret and can use it for that purpose at that service
alone, once per process of it (``ProofVerifier`` keeps the nonces it took until they
expire; under a flood of valid proofs it forgets the oldest rather than refuse).

Form: ``fgp1.<kid>.<unix time>.<nonce>.<hex HMAC-SHA256>``; the MAC covers the ring's name,
the kid, the time, the nonce and the purpose, under its own domain.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Sequence

from forge.config.keyring import HmacKeyring

PREFIX = "fgp1."
LIFETIME_S = 60  # either way: clocks of services on several machines differ a little
DOMAIN = b"frostgate-forge/peer-proof/v1:"
MAX_NONCES = 4096  # proofs remembered within one lifetime; beyond, the oldest are forgotten
_FORM = re.compile(r"fgp1\.([0-9a-f]{16})\.([0-9]{1,12})\.([A-Za-z0-9_-]{16})\.([0-9a-f]{64})")


def keyring_read(service: str) -> str:
    """The one purpose proofs are taken for: a peer's read of the key ids ``service`` (its
    name, e.g. "orchestrator") has in force, its config readiness check."""
    return f"{service} GET /readyz?check=config"


def mint_proof(ring: HmacKeyring, purpose: str, now: float | None = None) -> str:
    """A proof that the caller holds ``ring``'s current secret, for ``purpose``."""
    stamp = int(time.time() if now is None else now)
    nonce = secrets.token_urlsafe(12)
    kid = ring.current_kid
    mac = _mac(ring.current, ring.name, kid, stamp, nonce, purpose)
    return f"{PREFIX}{kid}.{stamp}.{nonce}.{mac}"


def is_proof(credential: str) -> bool:
    """Whether a bearer credential is meant as a proof (valid or not), not a token."""
    return credential.startswith(PREFIX)


class ProofVerifier:
    """Checks proofs against keyrings and takes each one once."""

    def __init__(self) -> None:
        self._taken: dict[str, float] = {}  # nonce -> when it expires
        self._lock = threading.Lock()

    def verify(self, credential: str, rings: Sequence[HmacKeyring], purpose: str,
               now: float | None = None) -> bytes | None:
        """The secret a valid, fresh, not yet taken proof for ``purpose`` was made with (it
        is taken now), or None. A proof names its key by kid; rings are searched in order."""
        found = _FORM.fullmatch(credential)
        if found is None:
            return None
        kid, stamp_text, nonce, mac = found.groups()
        at = time.time() if now is None else now
        stamp = int(stamp_text)
        if abs(at - stamp) > LIFETIME_S:
            return None
        for ring in rings:
            secret = ring.key_for(kid)
            if secret is None:
                continue
            if hmac.compare_digest(mac, _mac(secret, ring.name, kid, stamp, nonce, purpose)):
                return secret if self._take(nonce, stamp + LIFETIME_S, at) else None
        return None

    def _take(self, nonce: str, expires: float, now: float) -> bool:
        """Record ``nonce`` as used until ``expires``; False when it was used already. With
        MAX_NONCES unexpired ones held, the half expiring first is forgotten: refusing
        instead would let a flood of proofs (each peer readiness run makes one) stop the
        peers' own reads, and a proof opens the key ids alone."""
        with self._lock:
            if nonce in self._taken:
                return False
            if len(self._taken) >= MAX_NONCES:
                live = sorted((e, n) for n, e in self._taken.items() if e >= now)
                self._taken = {n: e for e, n in live[-(MAX_NONCES // 2):]}
            self._taken[nonce] = expires
            return True


def _mac(secret: bytes, ring: str, kid: str, stamp: int, nonce: str, purpose: str) -> str:
    message = DOMAIN + "\n".join((ring, kid, str(stamp), nonce, purpose)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()
