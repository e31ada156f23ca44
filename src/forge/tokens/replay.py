"""Replay protection: a token id may be consumed once until its expiry."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from forge.tokens.errors import TokenReplayed

MAX_JTI_CHARS = 128


class ReplayStore(Protocol):
    """Records consumed jtis and reports whether each was new; it never judges the token."""

    def consume(self, jti: str, kind: str, expires_at: datetime) -> bool:
        """Mark `jti` used: True on its first use, False if it already was."""

    def purge_expired(self, now: datetime) -> int:
        """Forget jtis whose tokens have expired; returns how many were removed."""


def consume_once(store: ReplayStore, jti: str, kind: str, expires_at: datetime) -> None:
    """Record the token's single use, or raise TokenReplayed: it was used before, or it
    carries no usable jti (a token that cannot be tracked is never accepted)."""
    if not jti or len(jti) > MAX_JTI_CHARS:
        raise TokenReplayed(f"{kind} token has no usable jti")
    if not store.consume(jti, kind, expires_at):
        raise TokenReplayed(f"{kind} token was already used")
