"""Publishing JSON events to JetStream, confirmed and de-duplicated.

Every event carries a `Nats-Msg-Id` header: JetStream drops a second message with the same
id inside the stream's duplicate window, so a caller may retry a publish safely. `publish`
returns only once JetStream has stored the event; otherwise it raises `BusUnavailable`
within a bounded time, so the spawn API can answer 503 and persist nothing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import nats.errors
import nats.js.errors

from forge.bus.connection import BusConnection
from forge.bus.dial import redact_url
from forge.bus.errors import BusOutcomeUnknown, BusUnavailable
from forge.bus.events import CONTENT_TYPE, MSG_ID_HEADER, encode_event
from forge.bus.permissions import BusCredentials
from forge.bus.subjects import FORGE_STREAMS, StreamSpec, check_subject, stream_of

# How long a publish waits for a connection that was up to come back (and JetStream to
# answer again) before it reports the bus unavailable; a few hundred milliseconds.
RECONNECT_GRACE_S = 0.75
RETRY_PAUSE_S = 0.05
_MSG_ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}\Z")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9-]{1,64}\Z")


@dataclass
class _Unconfirmed:
    """Publishes to one subject that JetStream did not confirm, with none confirmed since."""

    since: float  # monotonic time of the first
    count: int
    error: str
    reconnects: int  # the connection's reconnect count then (a reconnect forgets them)
    last: float = 0.0  # monotonic time of the latest
    # The latest found no stream to answer at all (no leader: a failover's election, lost
    # quorum): forgotten once the stream answers again. One that timed out is forgotten
    # only once another server leads the stream than the one known to lead it then (a
    # stream that cannot write, on a full disk, keeps its leader and answers info requests
    # all along, so that stays).
    leaderless: bool = False
    leader: str | None = None


# An unconfirmed publish not followed by another this long is forgotten: one ack lost to a
# slow moment must not hold readiness red until the next publish of a rare subject (an
# expiry), while a stream that cannot write fails every publish and stays named.
UNCONFIRMED_FORGET_S = 60.0


class _Retryable(BusUnavailable):
    """Nothing was stored and the bus may be back in a moment: worth another attempt."""


class _Leaderless(BusUnavailable):
    """Nothing was stored: no stream answered for the subject (it has no leader now)."""


@dataclass(frozen=True)
class PublishAck:
    """JetStream's confirmation: where the event was stored, and whether it was a duplicate."""

    stream: str
    seq: int
    duplicate: bool


def check_msg_id(msg_id: str) -> str:
    """Return `msg_id` if usable as a de-duplication id (1-200 safe characters)."""
    if not isinstance(msg_id, str) or not _MSG_ID_RE.fullmatch(msg_id):
        raise ValueError("msg_id: must be 1-200 characters of A-Z a-z 0-9 . _ : @ / + = -")
    return msg_id


def _refused(last_error: str | None, subject: str) -> bool:
    """Whether the server's last error was a permissions violation for `subject`."""
    text = (last_error or "").lower()
    return f'permissions violation for publish to "{subject.lower()}"' in text


class Publisher:
    """Publishes events over its own background-connected NATS client."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "forge-publisher",
        timeout: float = 2.0,
        streams: tuple[StreamSpec, ...] = FORGE_STREAMS,
        connect_timeout: float = 5.0,
        reconnect_wait: float = 0.5,
        credentials: BusCredentials | None = None,
        max_reconnect_attempts: int = -1,
        reconnect_grace: float = RECONNECT_GRACE_S,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout: must be > 0 seconds")
        self._timeout = timeout
        self._reconnect_grace = reconnect_grace
        self._conn = BusConnection(
            url,
            name,
            streams=streams,
            connect_timeout=connect_timeout,
            reconnect_wait=reconnect_wait,
            credentials=credentials,
            max_reconnect_attempts=max_reconnect_attempts,
        )
        self._streams = streams
        self._unconfirmed: dict[str, _Unconfirmed] = {}
        self._leaders: dict[str, str] = {}  # stream -> its leader as last seen answering
        self.forget_unconfirmed_s = UNCONFIRMED_FORGET_S

    @property
    def connection(self) -> BusConnection:
        """The underlying connection (state for readiness and metrics)."""
        return self._conn

    @property
    def connected(self) -> bool:
        """True when connected and the streams are in place."""
        return self._conn.ready

    def unconfirmed(self) -> str | None:
        """Subjects whose latest publish JetStream did not store while connected (a stream
        that cannot write: a full disk leaves one failing every write until nats-server
        restarts), or None. Forgotten on the next confirmed publish of the subject, or
        when the connection comes back from a reconnect (a restarted server), or
        UNCONFIRMED_FORGET_S after the latest failure."""
        reconnects = self._conn.state.reconnects
        now = time.monotonic()
        for subject, entry in list(self._unconfirmed.items()):
            if entry.reconnects != reconnects or now - entry.last > self.forget_unconfirmed_s:
                self._unconfirmed.pop(subject, None)
        if not self._unconfirmed:
            return None
        return "; ".join(
            f"{subject}: {e.count} publish(es) not stored over {now - e.since:.0f}s "
            f"({e.error})" for subject, e in self._unconfirmed.items())

    def status(self) -> dict[str, Any]:
        """Connection state for /readyz and /metrics."""
        return {"ready": self._conn.ready, **self._conn.state.as_dict()}

    async def start(self, wait: float | None = None) -> bool:
        """Start connecting in the background; optionally wait up to `wait` s; True if ready."""
        return await self._conn.start(wait)

    async def close(self) -> None:
        """Close the connection."""
        await self._conn.close()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def publish(
        self,
        subject: str,
        data: Mapping[str, Any],
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> PublishAck:
        """Publish one JSON event and wait for JetStream to store it.

        Bad input raises `ValueError`/`TypeError` naming the field. Anything else that keeps
        the event from being stored raises `BusUnavailable`: NATS unreachable, no stream for
        the subject, JetStream refusing it, or no acknowledgement within `timeout` (default:
        the publisher's). A `msg_id` already seen inside the stream's duplicate window
        returns `duplicate=True` (the event is stored once).
        """
        check_subject(subject)
        check_msg_id(msg_id)
        payload = encode_event(data)
        hdrs: dict[str, str] = {}
        for key, value in (headers or {}).items():
            if not _HEADER_NAME_RE.fullmatch(key) or key.lower().startswith("nats-"):
                raise ValueError(f"headers: {key!r} is not an allowed header name")
            if not isinstance(value, str) or "\r" in value or "\n" in value:
                raise ValueError(f"headers: value of {key!r} must be a single-line string")
            hdrs[key] = value
        hdrs["Content-Type"] = CONTENT_TYPE
        hdrs[MSG_ID_HEADER] = msg_id
        wait = self._timeout if timeout is None else timeout
        # A connection that was up and is reconnecting (a NATS restart, a failover) gets a
        # short bounded grace: the learner should not see a momentary reconnect. Retrying is
        # safe: the message id makes JetStream store the event once.
        try:
            ack = await self._publish_retrying(subject, payload, hdrs, wait)
        except BusUnavailable as exc:
            if self._conn.ready:  # not a lost connection (readiness says so anyway)
                self._note_unconfirmed(subject, str(exc),
                                       leaderless=isinstance(exc, _Leaderless))
            raise
        self._unconfirmed.pop(subject, None)
        return ack

    def _note_unconfirmed(self, subject: str, error: str, *, leaderless: bool) -> None:
        entry = self._unconfirmed.get(subject)
        reconnects = self._conn.state.reconnects
        if entry is None or entry.reconnects != reconnects:
            entry = self._unconfirmed[subject] = _Unconfirmed(time.monotonic(), 0, "",
                                                              reconnects)
        entry.count += 1
        entry.error = error[:200]
        entry.last = time.monotonic()
        entry.leaderless = leaderless
        stream = stream_of(subject, self._streams)
        entry.leader = None if stream is None else self._leaders.get(stream)

    def note_leader(self, stream: str, leader: str | None) -> None:
        """Remember which server led `stream` when it last answered an info request (None
        or "": a stream on one server)."""
        self._leaders[stream] = leader or ""

    def _forgettable(self, entry: _Unconfirmed) -> bool:
        return entry.leaderless or bool(entry.leader)

    async def recheck_failover(self, timeout: float) -> None:
        """Forget the publishes a failover lost, once their stream answers an info request
        asked after them (only a stream with a leader answers, and that leader stores the
        next publish): those that found no stream to answer (an election, lost quorum), and
        those that timed out on a leader that no longer leads. Kept instead, they held
        readiness red for UNCONFIRMED_FORGET_S after a failover on a whole bus, unless the
        same subject was published again (and a replica seen not ready gets no traffic to
        publish). A publish that timed out on the stream's current leader stays (a stream
        that cannot write, on a full disk, answers info requests all along)."""
        names = sorted({name for subject, entry in self._unconfirmed.items()
                        if self._forgettable(entry)
                        and (name := stream_of(subject, self._streams)) is not None})
        if not names:
            return
        asked = time.monotonic()
        answers = await asyncio.gather(*(self._stream_leader(n, timeout) for n in names))
        now_led = {name: leader for name, leader in zip(names, answers, strict=True)
                   if leader is not None}
        for subject, entry in list(self._unconfirmed.items()):
            leader = now_led.get(stream_of(subject, self._streams) or "")
            if leader is None or entry.last > asked or not self._forgettable(entry):
                continue
            if entry.leaderless or entry.leader != leader:
                self._unconfirmed.pop(subject, None)

    async def _stream_leader(self, stream: str, timeout: float) -> str | None:
        """The server leading `stream` now ("" on one server), None when it does not answer."""
        try:
            info = await self._conn.jetstream(timeout).stream_info(stream)
        except (BusUnavailable, nats.errors.Error, TimeoutError):
            return None
        self.note_leader(stream, info.cluster.leader if info.cluster else None)
        return self._leaders[stream]

    async def _publish_retrying(self, subject: str, payload: bytes, hdrs: dict[str, str],
                                wait: float) -> PublishAck:
        deadline = time.monotonic() + self._reconnect_grace
        while True:
            try:
                return await self._publish_once(subject, payload, hdrs, wait)
            except _Retryable as exc:
                left = deadline - time.monotonic()
                if not self._conn.ever_ready or left <= 0:
                    raise _Leaderless(str(exc)) from exc.__cause__
                if not await self._conn.wait_ready(left):
                    raise _Leaderless(str(exc)) from exc.__cause__
                await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - time.monotonic())))

    async def _publish_once(self, subject: str, payload: bytes, hdrs: dict[str, str],
                            wait: float) -> PublishAck:
        """One attempt; `_Retryable` when the bus is (re)connecting or JetStream recovering."""
        if not self._conn.ready:
            # Just starting: give the first connection a moment. In an outage: fail fast.
            first = not self._conn.ever_ready and self._conn.state.last_error is None
            if not (await self._conn.start(wait if first else None)):
                raise _Retryable(f"not connected to NATS at {redact_url(self._conn.url)}")
        client = self._conn.client()
        if len(payload) > client.max_payload:
            raise ValueError(
                f"data: event is {len(payload)} bytes, above the server's limit of "
                f"{client.max_payload}; store large content elsewhere and send its hash"
            )
        js = client.jetstream()
        try:
            ack = await asyncio.wait_for(
                js.publish(subject, payload, timeout=wait, headers=hdrs), wait + 0.5
            )
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            if _refused(self._conn.state.last_error, subject):
                who = self._conn.credentials.identity if self._conn.credentials else "anonymous"
                raise BusUnavailable(
                    f"NATS refused {subject}: the {who} identity may not publish it"
                ) from exc
            # A server that hangs (stopped, wedged) keeps its socket open and answers
            # nothing; the pings notice it only after several intervals, and meanwhile every
            # publish times out. Leave it now, as the node's heartbeat does, so the next
            # publish (the learner's retry) reaches a live server of the cluster.
            await self._conn.leave_if_hung()
            raise BusOutcomeUnknown(
                f"JetStream did not confirm {subject} within {wait:.1f}s") from exc
        except nats.js.errors.NoStreamResponseError as exc:
            raise _Leaderless(f"no JetStream stream answered for {subject}") from exc
        except nats.js.errors.ServiceUnavailableError as exc:
            raise _Retryable(f"JetStream unavailable: {exc.description}") from exc
        except nats.js.errors.APIError as exc:
            raise BusUnavailable(f"JetStream refused {subject}: {exc.description}") from exc
        except (nats.errors.NoRespondersError, nats.errors.NoServersError,
                nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError
                ) as exc:
            raise _Retryable(f"NATS could not take {subject}: {exc}") from exc
        except nats.errors.Error as exc:
            raise BusOutcomeUnknown(f"NATS failed while publishing {subject}: {exc}") from exc
        return PublishAck(stream=ack.stream, seq=ack.seq, duplicate=bool(ack.duplicate))
