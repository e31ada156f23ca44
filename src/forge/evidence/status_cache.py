"""The signed revocation status list, cached per process.

The list is public and unauthenticated: signing it afresh on every GET (a DB read, 16 KiB
gzipped, an Ed25519 signature) lets anyone make the scoreboard work hard. The signed token
is kept and reused until what it depends on changes (a revocation or a new credential, by
`status_list_version`; the current signing key; the list URL), and at the latest once half
its validity has passed, so a verifier always gets a list valid for at least 12 hours.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from forge.evidence.credentials import CredentialUrls, status_list_token
from forge.signing.keystore import SigningKey
from forge.store.db import Database
from forge.store.issued_credentials import status_list_version
from forge_verify.credential import STATUS_LIST_VALIDITY_S

REFRESH_AFTER = timedelta(seconds=STATUS_LIST_VALIDITY_S / 2)


@dataclass(frozen=True)
class _Signed:
    basis: tuple[object, ...]
    signed_at: datetime
    token: str


class StatusListCache:
    """One process's signed status list; `token` re-signs only when it must."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signed: _Signed | None = None

    def token(self, db: Database, key: SigningKey, urls: CredentialUrls,
              now: datetime | None = None) -> str:
        """The current signed list (blocking: call from a worker thread)."""
        moment = now or datetime.now(UTC)
        basis = (status_list_version(db), key.key_id, urls.status_list)
        with self._lock:
            held = self._signed
            if held is not None and held.basis == basis and \
                    timedelta(0) <= moment - held.signed_at < REFRESH_AFTER:
                return held.token
            token = status_list_token(db, key, urls, now=moment)
            self._signed = _Signed(basis, moment, token)
            return token
