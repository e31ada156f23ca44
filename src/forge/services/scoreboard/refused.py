"""The error for a completion event that must never be scored as it stands."""

from __future__ import annotations

from forge.errors import ForgeError


class CompletionRefused(ForgeError):
    """The event must never be scored as it stands (forged, mismatched, malformed).

    Raised while reading an event from the bus, not in answer to a request; its status is
    always 422 (the event is understood but refused), so raise sites give only code and
    message. `str()` is "code: message", the reason kept with the failed event.
    """

    STATUS = 422

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, self.STATUS, message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
