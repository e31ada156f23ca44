"""The listening socket of a service: bound before anything else starts, or inherited.

`forge serve` binds its port first, so a port already in use is a one-line error naming
it before a database is opened or a subscriber started. A supervisor (``forge up``, a
drill, systemd-style socket activation) can instead create the socket once and hand it to
every incarnation of the service in ``FORGE_LISTEN_FD``: while one incarnation stops and
the next starts, connections wait in the kernel's backlog instead of being refused, so a
restart or a rollout refuses nothing.
"""

from __future__ import annotations

import errno
import os
import socket

ENV_FD = "FORGE_LISTEN_FD"
BACKLOG = 2048


class PortUnavailable(OSError):
    """The service's address cannot be bound; the message names it and why."""

    def __str__(self) -> str:
        return str(self.strerror)


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening, inheritable by children."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        why = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise PortUnavailable(exc.errno or 0, f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def worker_listeners(sock: socket.socket, count: int) -> list[socket.socket]:
    """`count` listening sockets on `sock`'s address, one per worker process, in place of
    `sock` (closed here; it proved the port free).

    Workers accepting from one shared socket split a class's connections unevenly: the
    event loop (libuv) accepts every pending connection each time the socket is readable,
    so the worker that wakes first takes nearly all of a burst, and keep-alive clients stay
    with it (measured: 32 connections at once, all 32 on one worker in two rounds of five).
    With SO_REUSEPORT the kernel spreads new connections over the sockets by their
    addresses, evenly. `sock` was bound without the option, so the port was not already
    another service's group; but Linux lets any process of the same user join the group
    later (the runbook says to run the service under a user of its own), and connections
    sent to a dead worker's socket wait for its restart (the parent keeps it open)."""
    address = sock.getsockname()
    family = sock.family
    sock.close()
    made: list[socket.socket] = []
    try:
        for _ in range(count):
            one = socket.socket(family, socket.SOCK_STREAM)
            made.append(one)
            one.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            one.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            one.bind(address)
            one.listen(BACKLOG)
            one.set_inheritable(True)
    except OSError as exc:
        for one in made:
            one.close()
        why = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise PortUnavailable(exc.errno or 0, f"cannot listen on {address[0]}:{address[1]}: "
                                              f"{why}") from None
    return made


def inherited_listener(environ: dict[str, str] | None = None) -> socket.socket | None:
    """The listening socket handed down in FORGE_LISTEN_FD, or None when none was."""
    raw = (os.environ if environ is None else environ).get(ENV_FD)
    if not raw:
        return None
    try:
        sock = socket.socket(fileno=int(raw))
    except (ValueError, OSError) as exc:
        raise PortUnavailable(errno.EBADF, f"{ENV_FD}={raw!r} is not an open socket: "
                                           f"{exc}") from None
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise PortUnavailable(errno.EINVAL, f"{ENV_FD}={raw!r} is not a listening socket")
    return sock
