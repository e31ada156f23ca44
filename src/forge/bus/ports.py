"""Loopback ports for the servers Forge starts itself (the embedded NATS, test servers).

Free ports are picked below the kernel's ephemeral range: a port from `bind(0)` comes from
the range outgoing connections use, so between picking it and a server binding it any
client socket may take it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
_PORTS_FLOOR = 10000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (32768 if unreadable)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text(encoding="ascii")[:64].split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` free now, picked below the kernel's ephemeral range.

    A port from `bind(0)` comes from the range outgoing connections use, so between
    picking it and a server binding it any client socket may take it; ports below
    that range are only ever taken by someone binding them on purpose.
    """
    ceiling = _ephemeral_floor()
    for _ in range(64) if ceiling - _PORTS_FLOOR > 1000 else ():
        port = random.randrange(_PORTS_FLOOR, ceiling)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen
