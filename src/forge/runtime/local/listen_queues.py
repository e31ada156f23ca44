"""Keeping a learner's unaccepted TCP connections from holding the machine's memory.

A connection the kernel completes for a listening socket waits in that socket's accept
queue as a full socket of its own, made in softirq context and so charged to no memory
cgroup, with whatever the client sent before closing queued on it, counted in the
machine's ``tcp_mem`` and not in the lab's ``memory.kmem.tcp``. Any lab process may do it
(no capability): from a learner host, 12 listeners that never accept, each sent 4,096
connections whose clients closed at once, held 49,000 sockets (116 MB of the ``TCP`` slab,
49,000 pages of the machine's ``tcp_mem``) while the lab's memory cgroup said 52 MB in
all; another few hundred listeners would take the machine's ``tcp_mem`` and every TCP
connection of the machine (other labs', the platform's) with it. Half-open connections are
the same, 320 bytes each: a NET_ADMIN host that raises its ``somaxconn`` and
``tcp_synack_retries`` and drops the handshakes' last ACK keeps them for hours, as many as
it sends SYNs. ``trim_host`` sums what a host's listeners hold unaccepted or half-open and,
past ``HOST_LIMIT``, aborts every listener holding any (``SOCK_DESTROY``, as ``ss -K``
does: Linux with ``CONFIG_INET_DIAG_DESTROY``), which frees their queues: the programs
see their listening socket fail, as after a reset. A lab's services accept what they are
sent; a handful wait at any moment. Half-open connections are counted only while the
machine holds more than ``HALF_OPEN_GUARD`` (its ``request_sock`` slabs): listing them
walks the machine's whole connection table, about a millisecond per host, where listing
listeners takes 30 µs.
"""

from __future__ import annotations

import errno
import socket
import struct

from forge.runtime.local.netns import in_netns
from forge.runtime.local.rtnl import Rtnl

HOST_LIMIT = 1_024  # unaccepted and half-open connections one lab host's listeners may hold
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, SOCK_DESTROY = 4, 20, 21
TCP_SYN_RECV, TCP_LISTEN, TCP_NEW_SYN_RECV = 3, 10, 12
HALF_OPEN_GUARD = 16_384  # request sockets the machine holds before hosts' are counted
SLABINFO = "/proc/slabinfo"
REQUEST_SLABS = ("request_sock_TCP", "request_sock_TCPv6")
# inet_diag_req_v2: family, protocol, ext, pad, states, then the 48-byte inet_diag_sockid
_REQ = struct.Struct("=BBBxI")
_SOCKID_SIZE = 48
# inet_diag_msg: family, state, timer, retrans, sockid, expires, rqueue, wqueue, uid, inode
_MSG_HEAD, _MSG_TAIL = struct.Struct("=BBBB"), struct.Struct("=IIIII")


def machine_request_socks(path: str = SLABINFO) -> int | None:
    """The request sockets (half-open connections, and accept queues' entries) the machine
    holds, from its slab counts; None when they are not to be read (then count them)."""
    held, seen = 0, False
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 1 and fields[0] in REQUEST_SLABS:
                    held, seen = held + int(fields[1]), True
    except (OSError, ValueError):
        return None
    return held if seen else None


def _listeners(diag: Rtnl, family: int, half_open_too: bool) -> list[tuple[bytes, int]]:
    """(sockid, unaccepted connections, and half-open ones if ``half_open_too``) of each
    TCP listener of ``family`` in the namespace. A half-open connection is dumped with its
    listener's local port (and state ``TCP_SYN_RECV``); one port's are counted to each
    listener on it."""
    listeners: list[tuple[bytes, int]] = []
    half_open: dict[bytes, int] = {}
    states = 1 << TCP_LISTEN | (1 << TCP_NEW_SYN_RECV if half_open_too else 0)
    ask = _REQ.pack(family, socket.IPPROTO_TCP, 0, states) + bytes(_SOCKID_SIZE)
    for payload in diag.dump(SOCK_DIAG_BY_FAMILY, ask, partial=True):
        if len(payload) < _MSG_HEAD.size + _SOCKID_SIZE + _MSG_TAIL.size:
            continue
        state = payload[1]
        sockid = payload[_MSG_HEAD.size:_MSG_HEAD.size + _SOCKID_SIZE]
        _exp, rqueue, _wq, _uid, _ino = _MSG_TAIL.unpack_from(
            payload, _MSG_HEAD.size + _SOCKID_SIZE)
        if state == TCP_LISTEN:
            listeners.append((sockid, rqueue))
        elif state in (TCP_SYN_RECV, TCP_NEW_SYN_RECV):
            half_open[sockid[:2]] = half_open.get(sockid[:2], 0) + 1  # by local port
    return [(sockid, queued + half_open.get(sockid[:2], 0)) for sockid, queued in listeners]


def _trim_here(half_open_too: bool) -> int:
    """In the calling thread's namespace: abort every TCP listener holding unaccepted (or,
    ``half_open_too``, half-open) connections when they hold more than ``HOST_LIMIT``
    together; how many connections they held then (0: none aborted)."""
    with Rtnl(NETLINK_SOCK_DIAG) as diag:
        queues = {family: _listeners(diag, family, half_open_too)
                  for family in (socket.AF_INET, socket.AF_INET6)}
        held = sum(queued for found in queues.values() for _id, queued in found)
        if held <= HOST_LIMIT:
            return 0
        for family, found in queues.items():
            for sockid, queued in found:
                if not queued:
                    continue
                try:
                    diag.request(SOCK_DESTROY, _REQ.pack(family, socket.IPPROTO_TCP, 0,
                                                         1 << TCP_LISTEN) + sockid,
                                 what="listener abort")
                except OSError as exc:
                    if exc.errno != errno.ENOENT:  # closed meanwhile
                        raise
        return held


def trim_host(namespace: str, half_open_too: bool = True) -> int:
    """``_trim_here`` in the lab host's network namespace ``namespace``."""
    return in_netns(namespace, lambda: _trim_here(half_open_too))
