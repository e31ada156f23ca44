"""Opening one NATS client with Forge's reconnect settings, and its live state.

`connect()` opens one client (a service retries forever with a short wait; tests and
one-shot tools bound the attempts) and keeps a `ConnectionState` current through nats-py's
callbacks; `split_urls` and `redact_url` read and show a `NATS_URL` (several servers,
credentials never shown).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import nats.errors
from nats.aio.client import DEFAULT_BUFFER_SIZE, Client
from nats.aio.transport import TcpTransport

from forge.bus.bounded_close import close_client, retrieve, run_to_end, stop_task
from forge.bus.errors import BusUnavailable
from forge.bus.permissions import BusCredentials
from forge.bus.tls import client_context

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

# How long a socket being left may take to close cleanly before it is dropped: a live
# server answers a TLS close_notify within milliseconds, a hung one never does.
CLOSE_WAIT_S = 1.0


class BoundedCloseTransport(TcpTransport):
    """nats-py's TCP/TLS transport whose `wait_closed` waits at most CLOSE_WAIT_S, then
    aborts the socket.

    nats-py's own reconnect (pings unanswered, a read error) closes the old socket and
    waits for it to close before dialling the next server; over TLS that wait is for the
    peer's close_notify, which a hung server (stopped, wedged, cut off by a firewall) never
    sends, so asyncio's 30 s SSL shutdown timeout kept the client away from the live
    servers of its cluster, longer than a lab node's grace period.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # nats-py's, untyped

    async def wait_closed(self) -> None:
        writer = self._io_writer
        if writer is None:
            return
        closing = asyncio.ensure_future(writer.wait_closed())
        closing.add_done_callback(retrieve)
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_WAIT_S)
        if closing not in done:
            writer.transport.abort()  # wakes the wait at once
            await asyncio.wait({closing}, timeout=CLOSE_WAIT_S)
            return
        closing.result()


def ping_due(received: int, received_at_last_tick: int | None, outstanding: int) -> bool:
    """Whether a client pings its server at this tick of its ping interval: not when the
    server sent a message since the last tick and no ping is unanswered (it is alive;
    what the NATS server itself does for its clients), else yes. A server that hangs
    sends nothing more, so its pings count up to stale one interval later at most; an
    idle connection pings as before (and every connection at its first tick)."""
    return outstanding > 0 or received_at_last_tick in (None, received)


class _Client(Client):
    """nats-py's client on a `BoundedCloseTransport` for nats:// and tls:// servers, pinging
    only when the server has been silent for an interval (`ping_due`)."""

    async def _ping_interval(self) -> None:
        # nats-py's loop, with `ping_due`: a lab node's heartbeat connection pings every
        # grace/8 (1.9 s) while its heartbeat is answered every 2 s, and each idle consumer's
        # open fetch is answered every 5 s: pings there were a tenth of an idle
        # orchestrator's CPU and of nats-server's (issue 19).
        seen: int | None = None
        while True:
            await asyncio.sleep(self.options["ping_interval"])
            if not self.is_connected:
                continue
            before, seen = seen, self.stats["in_msgs"]
            if not ping_due(seen, before, self._pings_outstanding):
                continue
            try:
                self._pings_outstanding += 1
                if self._pings_outstanding > self.options["max_outstanding_pings"]:
                    await self._process_op_err(nats.errors.StaleConnectionError())
                    return
                await self._send_ping()
            except (asyncio.CancelledError, RuntimeError, AttributeError):
                break

    async def _connect_to_server(self, s: Any) -> None:
        if s.uri.scheme not in ("nats", "tls"):
            await super()._connect_to_server(s)
            return
        # nats-py's own version makes a plain TcpTransport on the first dial and reuses it
        # for every reconnect (connect() replaces its streams): the same steps, ours.
        s.last_attempt = time.monotonic()
        if not isinstance(self._transport, BoundedCloseTransport):
            self._transport = BoundedCloseTransport()
        await self._transport.connect(s.uri, buffer_size=DEFAULT_BUFFER_SIZE,
                                      connect_timeout=self.options["connect_timeout"])


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


def describe(exc: BaseException) -> str:
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
    service wants). `credentials` authenticate as one bus identity (and use its inbox prefix);
    with a `server_ca`, only to a server that proves a certificate of that CA, over TLS.
    """
    servers = split_urls(url)
    st = state if state is not None else ConnectionState()
    refusals: list[str] = []  # the server's own reasons, e.g. "Authorization Violation"
    nc = _Client()

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
        st.last_error = describe(exc)
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
        if credentials.server_ca is not None:
            # TLS before the server's first byte, whatever its INFO would say: a server
            # that cannot prove the CA's certificate never sees the CONNECT.
            options.update(tls=client_context(credentials.server_ca),
                           tls_handshake_first=True)
    # nats-py's connect runs as our own task: on a timeout or a close it is stopped before
    # the client is closed (it retries by itself, and would reopen a closed client).
    connecting = asyncio.ensure_future(nc.connect(**options))
    connecting.add_done_callback(retrieve)
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
        st.last_error = refusals[-1] if refusals else describe(exc or TimeoutError())
        hint = ""
        if any(s.startswith("tls://") for s in servers) and (
                credentials is None or credentials.server_ca is None):
            hint = ("; its servers speak TLS: set FORGE_NATS_CA to their CA (that of "
                    "`forge up`'s NATS is STORAGE_ROOT/nats-tls/ca.pem)")
        raise BusUnavailable(
            f"cannot connect to NATS at {redact_url(url)}: {st.last_error}{hint}"
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


async def _abandon(nc: Client, connecting: asyncio.Task[Any]) -> None:
    """Stop nats-py's connect task, then close its client (at most ~3.5 s in all)."""
    await stop_task(connecting, 1.0)
    await close_client(nc, 1.0)
