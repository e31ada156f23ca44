"""A minimal rtnetlink client for the few link/address/route requests a lab host needs.

Run in a thread that entered the host's namespace: the socket belongs to the namespace
it was opened in. One socket and a handful of messages configure a host, where an
``ip -batch`` process cost ~1.5 ms of CPU per host and pyroute2's asyncio core more.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK = 16, 18, 19
RTM_NEWADDR, RTM_NEWROUTE = 20, 24
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 1, 4, 0x200, 0x400, 0x300
IFLA_IFNAME, IFLA_MASTER, IFLA_OPERSTATE, IFLA_IFALIAS = 3, 10, 16, 20
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_GATEWAY = 1, 5
IFF_UP, IF_OPER_UP = 1, 6
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1


class Rtnl:
    """A NETLINK_ROUTE socket of the calling thread's network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.sock.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.seq += 1
        self.sock.send(struct.pack("=IHHII", 16 + len(body), kind, flags, self.seq, 0) + body)
        return self.seq

    def request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        """Send one request and wait for its acknowledgement (raise on an error)."""
        seq = self._send(kind, NLM_F_REQUEST | NLM_F_ACK | flags, body)
        while True:
            for mkind, mseq, payload in self._messages():
                if mkind == NLMSG_ERROR and mseq == seq:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise OSError(err, f"{what}: {os.strerror(err)}")
                    return

    def _messages(self) -> list[tuple[int, int, bytes]]:
        buf = self.sock.recv(1 << 16)
        out, off = [], 0
        while off + 16 <= len(buf):
            length, kind, _flags, seq = struct.unpack_from("=IHHI", buf, off)
            if length < 16:
                raise OSError("netlink: malformed message")
            out.append((kind, seq, buf[off + 16:off + length]))
            off += (length + 3) & ~3
        return out

    def links(self) -> list[tuple[int, str, int, int]]:
        """(index, name, master index or 0, operstate) of every link (one dump)."""
        seq = self._send(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                         struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0))
        found: list[tuple[int, str, int, int]] = []
        while True:
            for kind, mseq, payload in self._messages():
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    raise OSError(err, f"netlink link dump: {os.strerror(err)}")
                if kind == RTM_NEWLINK:
                    index = struct.unpack_from("=i", payload, 4)[0]
                    found.append((index, *_link_attrs(payload[16:])))

    def link_up(self, index: int, alias: str | None = None) -> None:
        """Set link ``index`` up (and its alias)."""
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
        if alias is not None:
            body += _attr(IFLA_IFALIAS, alias.encode() + b"\0")
        self.request(RTM_SETLINK, 0, body, f"set link {index} up")

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """Add IPv4 ``address``/``prefixlen`` to link ``index``."""
        raw = ipaddress.IPv4Address(address).packed
        body = struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, 0, index)
        body += _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add address {address}")

    def add_route(self, dest: str, via: str) -> None:
        """Add an IPv4 route to ``dest`` (a CIDR or ``default``) through gateway ``via``."""
        net = ipaddress.IPv4Network("0.0.0.0/0" if dest == "default" else dest)
        body = struct.pack("=BBBBBBBBI", socket.AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN,
                           RTPROT_BOOT, 0, RTN_UNICAST, 0)
        if net.prefixlen:
            body += _attr(RTA_DST, net.network_address.packed)
        body += _attr(RTA_GATEWAY, ipaddress.IPv4Address(via).packed)
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, f"route {dest} via {via}")


def _attr(kind: int, value: bytes) -> bytes:
    size = 4 + len(value)
    return struct.pack("=HH", size, kind) + value + b"\0" * ((4 - size % 4) % 4)


def _link_attrs(attrs: bytes) -> tuple[str, int, int]:
    name, master, state, pos = "", 0, 0, 0
    while pos + 4 <= len(attrs):
        size, kind = struct.unpack_from("=HH", attrs, pos)
        if size < 4:
            break
        value = attrs[pos + 4:pos + size]
        kind &= 0x3FFF
        if kind == IFLA_IFNAME:
            name = value.split(b"\0", 1)[0].decode("ascii", "replace")
        elif kind == IFLA_MASTER:
            master = struct.unpack_from("=I", value)[0]
        elif kind == IFLA_OPERSTATE:
            state = value[0]
        pos += (size + 3) & ~3
    return name, master, state
