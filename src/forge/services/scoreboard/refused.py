"""The error for a completion event that must never be scored as it stands."""

from __future__ import annotations


class CompletionRefused(Exception):
    """The event must never be scored as it stands (forged, mismatched, malformed)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
