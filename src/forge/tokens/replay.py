"""Replay protection: a token id may be consumed once until its expiry."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class ReplayStore(Protocol):
    """Records consumed jtis; `consume` raises TokenReplayed for one seen before."""

    def consume(self, jti: str, kind: str, expires_at: datetime) -> None:
        """Mark `jti` used, or raise TokenReplayed if it already was."""

    def purge_expired(self, now: datetime) -> int:
        """Forget jtis whose tokens have expired; returns how many were removed."""
