"""NATS connections that reconnect by themselves and report their state.

`connect()` opens one client with Forge's reconnect settings (a service retries forever
with a short wait; tests and one-shot tools bound the attempts) and keeps a
`ConnectionState` current through nats-py's callbacks. `BusConnection` wraps it for
long-running services: it keeps trying in the background when NATS is down at start,
makes sure the Forge streams exist (again after every reconnect) and says when it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import nats.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from forge.bus.errors import BusError, BusUnavailable
from forge.bus.permissions import ADMIN, GRANTS, BusCredentials
from forge.bus.subjects import FORGE_STREAMS, StreamSpec, ensure_streams

log = logging.getLogger(__name__)
RETRY_WAIT_S = 0.5  # least pause between our own (logged) connection attempts

Callback = Callable[[], Awaitable[None]]


@dataclass
class ConnectionState:
    """Live view of one client connection, updated by the client's callbacks."""

    connected: bool = False
    connected_at: float | None = None
    disconnected_at: float | None = None
    disconnects: int = 0
    reconnects: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def split_urls(url: str) -> list[str]:
    """`NATS_URL` may list several servers separated by commas; validate each one."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError("url: no NATS server URL given")
    for server in servers:
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError(f"url: {redact_url(server)!r} is not a nats:// or tls:// URL")
    return servers


def redact_url(url: str) -> str:
    """The URL without credentials, for logs and error messages."""
    out = []
    for server in url.split(","):
        parts = urlsplit(server.strip() if "://" in server else f"nats://{server.strip()}")
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        out.append(f"{parts.scheme}://{host}{port}")
    return ",".join(out)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


async def connect(
    url: str,
    name: str,
    *,
    state: ConnectionState | None = None,
    timeout: float = 5.0,
    reconnect_wait: float = 0.5,
    ping_interval: float = 10.0,
    on_reconnected: Callback | None = None,
    credentials: BusCredentials | None = None,
    max_reconnect_attempts: int = -1,
) -> Client:
    """Connect to NATS with automatic reconnects; raise `BusUnavailable` on failure.

    `url` may list several servers (a cluster): the client gets all of them and, when its
    server goes away, moves to a surviving one. The first connection must succeed within
    `timeout` seconds; after that the client reconnects by itself, waiting `reconnect_wait`
    seconds between rounds, `max_reconnect_attempts` times per server (-1: for ever, what a
    service wants). `credentials` authenticate as one bus identity (and use its inbox prefix).
    """
    servers = split_urls(url)
    st = state if state is not None else ConnectionState()
    refusals: list[str] = []  # the server's own reasons, e.g. "Authorization Violation"
    nc = Client()

    async def on_disconnected() -> None:
        if st.connected:
            st.disconnects += 1
            st.disconnected_at = time.time()
        st.connected = False

    async def on_reconnect() -> None:
        st.connected = True
        st.reconnects += 1
        st.connected_at = time.time()
        if on_reconnected is not None:
            await on_reconnected()

    async def on_error(exc: Exception) -> None:
        st.last_error = _describe(exc)
        if "violation" in st.last_error.lower():
            refusals.append(st.last_error)

    async def on_closed() -> None:
        st.connected = False

    options: dict[str, Any] = {
        "servers": servers,
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": max_reconnect_attempts,
        "reconnect_time_wait": reconnect_wait,
        "connect_timeout": min(2.0, timeout),
        "ping_interval": ping_interval,
        "max_outstanding_pings": 3,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
        "closed_cb": on_closed,
    }
    if credentials is not None:
        options.update(user=credentials.user, password=credentials.password,
                       inbox_prefix=credentials.inbox_prefix)
    # nats-py's connect runs as our own task: on a timeout or a close it is stopped before
    # the client is closed (it retries by itself, and would reopen a closed client).
    connecting = asyncio.ensure_future(nc.connect(**options))
    connecting.add_done_callback(_retrieve)
    try:
        done, _ = await asyncio.wait({connecting}, timeout=timeout)
    except asyncio.CancelledError:
        await run_to_end(_abandon(nc, connecting))
        raise
    exc: BaseException | None = (
        TimeoutError(f"no connection within {timeout:g}s") if connecting not in done
        else None if connecting.cancelled() else connecting.exception())
    if exc is not None and not isinstance(exc, TimeoutError | OSError | nats.errors.Error):
        await run_to_end(_abandon(nc, connecting))
        raise exc
    if exc is not None or connecting.cancelled():
        await run_to_end(_abandon(nc, connecting))
        # The server's own reason beats a bare timeout.
        st.last_error = refusals[-1] if refusals else _describe(exc or TimeoutError())
        raise BusUnavailable(
            f"cannot connect to NATS at {redact_url(url)}: {st.last_error}"
        ) from exc
    # nats-py keeps the server's INFO private; `auth_required` is part of the protocol.
    server_info: dict[str, Any] = getattr(nc, "_server_info", {}) or {}
    if credentials is not None and credentials.require_auth and not server_info.get(
        "auth_required"
    ):
        await run_to_end(close_client(nc, 2.0))
        st.last_error = "server does not require authentication"
        raise BusUnavailable(
            f"NATS at {redact_url(url)} does not require authentication: anyone could "
            "speak on this bus; configure its users (`forge nats auth-config`)"
        )
    st.connected = True
    st.connected_at = time.time()
    return nc


async def stop_task(task: asyncio.Task[Any], timeout: float = 5.0) -> bool:
    """Cancel `task` and wait at most `timeout` s for it to end; True if it ended.

    One `cancel()` is not enough on Python 3.11: `asyncio.wait_for` drops a cancellation
    that arrives as its inner future completes, and nats-py's close catches the
    CancelledError while it waits for its reconnect task. So the task is cancelled again
    every 50 ms until it ends or the time is up, and the caller never waits longer.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.05, remaining))
    _retrieve(task)
    return True


async def run_to_end(step: Awaitable[None]) -> None:
    """Run a bounded clean-up `step` to its end even if this task is cancelled meanwhile
    (`stop_task` cancels every 50 ms), then raise that cancellation, if any."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    _retrieve(task)
    if cancelled:
        raise asyncio.CancelledError


async def _abandon(nc: Client, connecting: asyncio.Task[Any]) -> None:
    """Stop nats-py's connect task, then close its client (at most ~3.5 s in all)."""
    await stop_task(connecting, 1.0)
    await close_client(nc, 1.0)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Done callback: read a finished task's outcome, so asyncio never reports it unread."""
    if not task.cancelled():
        task.exception()


async def close_client(nc: Client, timeout: float) -> None:
    """Close `nc`, waiting at most about `timeout` s; past that, drop its socket.

    nats-py's close flushes and waits for the socket to close; on a connection whose
    peer went away that wait can last for ever, and the cancellation `asyncio.wait_for`
    sends it can be swallowed (see `stop_task`). A service stopping, or a test's teardown,
    must not hang on it.
    """
    closing = asyncio.ensure_future(nc.close())
    closing.add_done_callback(_retrieve)  # also when this call is cancelled meanwhile
    done, _ = await asyncio.wait({closing}, timeout=timeout)
    if closing in done:
        return
    transport = getattr(nc, "_transport", None)
    writer = getattr(transport, "_io_writer", None)
    if writer is not None:
        writer.transport.abort()  # wakes any drain/wait_closed on that socket
    # Let the woken close finish its clean-up (subscriptions, callbacks) before cancelling.
    done, _ = await asyncio.wait({closing}, timeout=0.5)
    if closing not in done and not await stop_task(closing, 1.0):
        log.warning("NATS client %s did not close within %.1f s; left behind",
                    getattr(nc, "_client_name", "?"), timeout + 1.5)


def may_manage_streams(credentials: BusCredentials | None) -> bool:
    """Whether this identity creates/updates streams (others only wait for them)."""
    if credentials is None or credentials.identity == ADMIN:
        return True
    return GRANTS[credentials.identity].manage_streams


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
        await nc.force_reconnect()
        return True

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
                self.state.last_error = _describe(exc)
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
