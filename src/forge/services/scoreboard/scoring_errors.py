"""The errors for a completion that is not scored now, or whose verdict cannot be audited.

Both are raised by the scoring step (`scoring`) and its verdict audit (`verdict_audit`);
the consumer answers the first with a later retry, the second with the normal fault path.
A completion never to be scored raises `refused.CompletionRefused` instead.
"""

from __future__ import annotations


class ScoringPaused(Exception):
    """Scoring cannot happen now (signing key, storage, the scenario's record); retry later,
    drop nothing."""


class NoRoomToScore(ScoringPaused):
    """Scoring cannot write its results or audit log: the storage root's disk (or its
    inodes) is full. The storage readiness check names it until a retry succeeds."""


class AuditFailed(Exception):
    """The verdict's audit failed in a way waiting cannot fix; the normal fault path
    (retry with backoff, then dead letter with this reason)."""
