"""NATS connections that reconnect by themselves and report their state.

`BusConnection` wraps one client (`dial.connect`) for long-running services: it keeps
trying in the background when NATS is down at start, makes sure the Forge streams exist
(again after every reconnect) and says when it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

import nats.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from forge.bus.bounded_close import close_client, run_to_end, stop_task
from forge.bus.dial import ConnectionState, connect, describe, redact_url, split_urls
from forge.bus.errors import BusError, BusUnavailable
from forge.bus.permissions import ADMIN, GRANTS, BusCredentials
from forge.bus.subjects import FORGE_STREAMS, StreamSpec, ensure_streams

log = logging.getLogger(__name__)
RETRY_WAIT_S = 0.5  # least pause between our own (logged) connection attempts


def may_manage_streams(credentials: BusCredentials | None) -> bool:
    """Whether this identity creates/updates streams (others only wait for them)."""
    if credentials is None or credentials.identity == ADMIN:
        return True
    return GRANTS[credentials.identity].manage_streams


# A live server answers a core ping within this, however busy its JetStream: one that
# does not is hung (stopped, wedged), and a client leaves it (`move_on`).
HUNG_PING_S = 1.0


class BusConnection:
    """One long-lived client that connects in the background and keeps the streams in place."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        streams: tuple[StreamSpec, ...] = FORGE_STREAMS,
        connect_timeout: float = 5.0,
        reconnect_wait: float = 0.5,
        credentials: BusCredentials | None = None,
        max_reconnect_attempts: int = -1,
        ping_interval: float = 10.0,
    ) -> None:
        split_urls(url)
        if max_reconnect_attempts < -1:
            raise ValueError("max_reconnect_attempts: must be -1 (for ever) or >= 0")
        self._max_reconnect_attempts = max_reconnect_attempts
        self.url = url
        self.name = name
        self.credentials = credentials
        self.state = ConnectionState()
        self._streams = streams
        self._connect_timeout = connect_timeout
        self._reconnect_wait = reconnect_wait
        self._ping_interval = ping_interval
        # Our own retry loops (first connection, stream set-up) log a warning per failure:
        # they never retry faster than RETRY_WAIT_S, whatever nats-py's reconnect wait is.
        self._retry_wait = max(reconnect_wait, RETRY_WAIT_S)
        self._nc: Client | None = None
        self._ready = asyncio.Event()
        self._reensure = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def ready(self) -> bool:
        """Connected now, and the streams were ensured since the first connect."""
        return self._ready.is_set() and self._nc is not None and self._nc.is_connected

    @property
    def ever_ready(self) -> bool:
        """True once the first connection was made and the streams ensured."""
        return self._ready.is_set()

    @property
    def connected_url(self) -> str | None:
        """The server this client is on now (`nats://host:port`, no credentials), if any."""
        if self._nc is None or not self._nc.is_connected or self._nc.connected_url is None:
            return None
        return redact_url(self._nc.connected_url.geturl())

    def client(self) -> Client:
        """The connected client, or `BusUnavailable`."""
        if self._nc is None or not self._nc.is_connected:
            raise BusUnavailable(f"not connected to NATS at {redact_url(self.url)}")
        return self._nc

    def jetstream(self, timeout: float = 5.0) -> JetStreamContext:
        """A JetStream context on the connected client (its requests wait `timeout` s for
        an answer), or `BusUnavailable`."""
        return self.client().jetstream(timeout=timeout)

    @property
    def server(self) -> str | None:
        """The server this connection is on now (no credentials), None when it is on none."""
        nc = self._nc
        if nc is None or not nc.is_connected or nc.connected_url is None:
            return None
        return redact_url(nc.connected_url.geturl())

    async def start(self, wait: float | None = None) -> bool:
        """Begin connecting in the background; optionally wait up to `wait` s for readiness."""
        if self._closed:
            raise BusError("connection was closed; create a new one")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"bus-connect-{self.name}")
        if wait is not None:
            return await self.wait_ready(wait)
        return self.ready

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until connected with the streams in place; False on timeout."""
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        while not self.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.ready

    async def answers(self, timeout: float) -> bool:
        """Whether the current server answers a ping within ``timeout`` seconds (rounded up
        to whole seconds; core NATS, not JetStream: a server whose JetStream is busy still
        answers)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.flush(timeout=max(1, math.ceil(timeout)))  # nats-py takes whole seconds
        except (nats.errors.Error, TimeoutError):
            return False
        return True

    async def move_on(self) -> bool:
        """Leave the current server for the next one of the cluster, now: a server that
        hangs (stopped, wedged) keeps its socket open and answers nothing, and the pings
        notice it only after several intervals. False when there was no live connection
        to leave (nats-py is already reconnecting, or never connected)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        # Abort the socket first: a graceful close of a TLS connection waits for the hung
        # peer's close_notify (asyncio's SSL shutdown timeout, 30 s) before nats-py dials
        # the next server, which kept the client disconnected for half a minute.
        writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.abort()
        await nc.force_reconnect()
        return True

    async def leave_if_hung(self, timeout: float = HUNG_PING_S) -> bool:
        """Ping the current server and leave it (``move_on``) if it does not answer within
        ``timeout`` seconds; True when it was left. For a client that just waited in vain
        (a publish unconfirmed, a fetch empty, a heartbeat timed out): a hung server would
        otherwise keep it until the pings give up and the TLS close times out, about a
        minute."""
        if await self.answers(timeout):
            return False
        try:
            return await self.move_on()
        except Exception:  # nats-py reconnects by itself then
            return False

    async def _on_reconnected(self) -> None:
        self._reensure.set()

    async def _run(self) -> None:
        while self._nc is None and not self._closed:
            try:
                nc = await connect(
                    self.url,
                    self.name,
                    state=self.state,
                    timeout=self._connect_timeout,
                    reconnect_wait=self._reconnect_wait,
                    on_reconnected=self._on_reconnected,
                    credentials=self.credentials,
                    max_reconnect_attempts=self._max_reconnect_attempts,
                    ping_interval=self._ping_interval,
                )
                if self._closed:  # close() gave up waiting for this task meanwhile
                    with contextlib.suppress(asyncio.CancelledError):
                        await run_to_end(close_client(nc, 2.0))
                    return
                self._nc = nc
            except BusUnavailable as exc:
                log.warning("bus %s: %s; retrying", self.name, exc)
                await asyncio.sleep(self._retry_wait)
        while not self._closed:
            await self._ensure_until_done()
            self._ready.set()
            await self._reensure.wait()
            self._reensure.clear()

    async def _ensure_until_done(self) -> None:
        assert self._nc is not None
        while True:
            try:
                actions = await ensure_streams(self._nc.jetstream(), self._streams,
                                               manage=may_manage_streams(self.credentials))
                for action in actions:
                    log.info("bus %s: %s", self.name, action)
                return
            except (BusError, nats.errors.Error, TimeoutError) as exc:
                self.state.last_error = describe(exc)
                log.warning("bus %s: ensuring streams failed: %s", self.name, self.state.last_error)
                await asyncio.sleep(self._retry_wait)

    async def close(self) -> None:
        """Stop connecting and close the client (idempotent)."""
        self._closed = True
        if self._task is not None:
            if not await stop_task(self._task):
                log.warning("bus %s: connection task did not stop; left behind", self.name)
            self._task = None
        if self._nc is not None:
            await close_client(self._nc, 5.0)
            self._nc = None
        self._ready.clear()
        self.state.connected = False
