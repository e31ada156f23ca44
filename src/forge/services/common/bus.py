"""A service's NATS identity from its settings, and the user list for an embedded server."""

from __future__ import annotations

import time
import weakref

import nats.errors

from forge.bus.dial import describe
from forge.bus.errors import BusError
from forge.bus.permissions import SERVICE_IDENTITIES, BusAuth, BusCredentials
from forge.bus.publisher import Publisher
from forge.bus.replication import forge_streams
from forge.bus.subjects import StreamSpec
from forge.config.settings import Settings
from forge.services.common.readiness import CheckFailed

# How long a readiness run waits for JetStream's answer to its one stream info request.
JETSTREAM_PROBE_S = 1.0


def bus_credentials(settings: Settings, identity: str) -> BusCredentials:
    """The credentials `identity` connects with; ConfigError naming the variable if unset.

    Outside dev a server that does not ask for them is refused (an open bus); in dev a
    local unauthenticated NATS may still be used. With FORGE_NATS_CA they go only to a
    server proving a certificate of that CA, over TLS.
    """
    return BusCredentials(identity, settings.nats_password(identity),
                          require_auth=not settings.env.is_dev, server_ca=settings.nats_ca)


def bus_streams(settings: Settings) -> tuple[StreamSpec, ...]:
    """The Forge streams with FORGE_NATS_REPLICAS copies each (what a service ensures)."""
    return forge_streams(settings.nats_replicas)


def bus_auth(settings: Settings) -> BusAuth:
    """Every accepted password (current, next, previous) of every service that has one.

    During a rotation the server accepts both the old and the new password of a service, so
    its replicas can roll one by one.
    """
    passwords: dict[str, tuple[str, ...]] = {}
    for identity in SERVICE_IDENTITIES:
        ring = settings.nats_passwords.get(identity)
        if ring is None or not ring.current:
            continue
        values = (ring.current, ring.next, ring.previous)
        passwords[identity] = tuple(v.decode() for v in values if v)
    return BusAuth(passwords)


async def jetstream_check(publisher: Publisher, stream: str,
                          timeout: float = JETSTREAM_PROBE_S) -> str:
    """Readiness: JetStream stores what `publisher` sends and answers, over its connection
    (no new one), one stream info request for `stream` within `timeout`. A connected
    client says nothing of JetStream: a server that disabled it, or whose stream failed a
    write on a full disk (sticky until nats-server restarts), keeps every connection up.
    A publish lost to a failover (no stream leader for a moment, or a leader that died)
    counts only until its stream answers again (`Publisher.recheck_failover`)."""
    await publisher.recheck_failover(timeout)
    unconfirmed = publisher.unconfirmed()
    if unconfirmed:
        raise CheckFailed(f"JetStream is not storing events: {unconfirmed}")
    answered = _answered.setdefault(publisher, {})
    last = answered.get(stream)
    if last is not None and time.monotonic() - last < JETSTREAM_RECHECK_S:
        return f"JetStream answers (stream {stream})"
    try:
        info = await publisher.connection.jetstream(timeout).stream_info(stream)
    except (BusError, nats.errors.Error, TimeoutError) as exc:
        answered.pop(stream, None)
        if isinstance(exc, TimeoutError):
            # A server that hangs (stopped, wedged, cut off) keeps the socket open and
            # answers nothing; a publisher with nothing to publish stayed on it, and the
            # service not ready, until its pings gave up (half a minute and more). Leave
            # it as the consumers and the heartbeat do: the next ask is on a live server.
            await publisher.connection.leave_if_hung()
        raise CheckFailed(f"JetStream did not answer (stream info {stream} within "
                          f"{timeout:g}s): {describe(exc)}") from None
    answered[stream] = time.monotonic()
    publisher.note_leader(stream, info.cluster.leader if info.cluster else None)
    return f"JetStream answers (stream {stream})"


# An answer is taken as current this long: `forge up` asks every service's readiness each
# 5 s, and a stream-info round trip per ask was a fifth of an idle service's CPU (and of
# nats-server's). What the publisher saw not stored is still told on every ask.
JETSTREAM_RECHECK_S = 15.0
_answered: weakref.WeakKeyDictionary[Publisher, dict[str, float]] = weakref.WeakKeyDictionary()
