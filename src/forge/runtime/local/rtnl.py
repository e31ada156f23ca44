"""The few rtnetlink requests a lab host's setup needs, on a raw socket.

A host's interfaces, address and routes used to be set by an ``ip -batch`` process per
host (a fork, an exec and iproute2's start-up each), and the wait for bridge ports by a
pyroute2 socket (≈2.3 ms of CPU to open); both are now a handful of messages on one
netlink socket opened by the calling thread, in the namespace that thread is in. So is
the wiring of the switch (bridges, veth pairs), which was the last ``ip -batch`` of a
lab without egress (≈4 ms of CPU in the ``ip`` process alone).
Requests are acknowledged one by one, so an error names the request that failed.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 16, 18, 20, 22, 24
RTM_DELNEIGH, RTM_GETNEIGH = 29, 30
RTM_DELQDISC, RTM_GETQDISC, RTM_GETTCLASS, RTM_GETTFILTER = 37, 38, 42, 46
TC_H_ROOT, TC_H_INGRESS = 0xFFFF_FFFF, 0xFFFF_FFF1  # ingress and clsact alike
NUD_PERMANENT, NDA_DST, NTF_PROXY = 0x80, 1, 0x08
AF_BRIDGE, NDA_LLADDR, NDA_VLAN, NDA_MASTER = 7, 2, 5, 9
NTF_SELF, NTF_MASTER = 0x02, 0x04
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = (
    1, 2, 4, 0x200, 0x400, 0x300)
NLM_F_DUMP_INTR = 0x10
NLMSG_ERROR, NLMSG_DONE = 2, 3
DUMP_TRIES = 5
IFF_UP = 1
IFLA_ADDRESS = 1
IFLA_IFNAME, IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_IFALIAS = 3, 10, 16, 18, 20
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_BR_FDB_MAX_LEARNED = 49  # Linux 6.8+; an older kernel ignores it
# Source addresses a lab bridge learns at most. Each learned entry is kernel memory of the
# switch namespace, charged to no lab and kept for the ageing time (300 s): a learner with
# NET_ADMIN changing its link's address in a loop (with arp_notify) taught one bridge
# 20,000 addresses in 5 s. A subnet's hosts need one each; past the cap a bridge floods
# frames for an address it did not learn, as for any unknown one.
BRIDGE_FDB_MAX_LEARNED = 256
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_GATEWAY = 1, 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
IF_OPER_UP = 6
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto,
#                                      scope, type, flags


def _attr(kind: int, data: bytes) -> bytes:
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


def netlink_attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each netlink attribute of ``data`` (a message's attributes, after
    its fixed header)."""
    pos = 0
    while pos + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, pos)
        if size < 4:
            return
        yield kind & 0x3FFF, data[pos + 4:pos + size]
        pos += (size + 3) & ~3


class Rtnl:
    """One rtnetlink socket in the calling thread's network namespace (``protocol``: another
    netlink family's, speaking the same framing, e.g. ``conntrack``'s)."""

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        self.sock.bind((0, 0))
        self.seq = 0
        self.interrupted = False

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.seq += 1
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | flags,
                                 self.seq, 0) + body)
        return self.seq

    def _recv(self) -> tuple[bytes, int]:
        """One datagram and its sender's netlink port (0: the kernel)."""
        data, (sender, _groups) = self.sock.recvfrom(1 << 16)
        return data, sender

    def _replies(self, seq: int) -> Iterator[tuple[int, bytes]]:
        """(type, payload) of each reply to ``seq`` until its end; raises OSError on an
        error reply or a malformed message (a dump's NLM_F_DUMP_INTR sets ``interrupted``)."""
        self.interrupted = False
        while True:
            data, sender = self._recv()
            if sender != 0:
                continue  # only the kernel answers requests
            for kind, flags, got, payload in messages(data):
                if got != seq:
                    continue
                if flags & NLM_F_DUMP_INTR:
                    self.interrupted = True
                if kind == NLMSG_ERROR:
                    if len(payload) < 4:
                        raise OSError(errno.EPROTO, "short netlink error message")
                    code = struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return
                if kind == NLMSG_DONE:
                    return
                yield kind, payload
                if not flags & NLM_F_MULTI:
                    return

    def request(self, kind: int, body: bytes, flags: int = 0, what: str = "") -> None:
        """Send one request and wait for its acknowledgement."""
        try:
            for _ in self._replies(self._send(kind, flags | NLM_F_ACK, body)):
                pass
        except OSError as exc:
            raise OSError(exc.errno, f"{what or kind}: {exc.strerror}") from None

    def nfnl_ask(self, kind: int, body: bytes) -> list[dict[int, bytes]]:
        """On a netfilter netlink socket: send one request and return the attributes of
        each message of its answer (after its 4-byte ``nfgenmsg``). The answer ends at the
        acknowledgement: ctnetlink marks even a one-message answer multi-part, with no
        end-of-dump message after it."""
        return [dict(netlink_attrs(payload[4:]))
                for _kind, payload in self._replies(self._send(kind, NLM_F_ACK, body))]

    def set_up(self, ifname: str, alias: str | None = None) -> None:
        """Bring interface ``ifname`` up (giving it ``alias``)."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
        body += _attr(IFLA_IFNAME, ifname.encode() + b"\0")
        if alias is not None:
            body += _attr(IFLA_IFALIAS, alias.encode())
        self.request(RTM_NEWLINK, body, what=f"set {ifname} up")

    def add_bridge(self, ifname: str) -> int:
        """Create bridge ``ifname``, up, learning at most ``BRIDGE_FDB_MAX_LEARNED``
        addresses; returns its interface index."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
        body += _attr(IFLA_IFNAME, ifname.encode() + b"\0")
        data = _attr(IFLA_BR_FDB_MAX_LEARNED, struct.pack("=I", BRIDGE_FDB_MAX_LEARNED))
        body += _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"bridge")
                      + _attr(IFLA_INFO_DATA, data))
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL, what=f"add bridge {ifname}")
        return socket.if_nametoindex(ifname)

    def add_veth(self, ifname: str, master: int, peer: str, peer_netns_fd: int) -> None:
        """Create veth ``ifname`` as a port of bridge index ``master``, up, whose peer
        ``peer`` (down) is created in the network namespace open at ``peer_netns_fd``."""
        peer_body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        peer_body += _attr(IFLA_IFNAME, peer.encode() + b"\0")
        peer_body += _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        info = _attr(IFLA_INFO_KIND, b"veth")
        info += _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_body))
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
        body += _attr(IFLA_IFNAME, ifname.encode() + b"\0")
        body += _attr(IFLA_MASTER, struct.pack("=I", master))
        body += _attr(IFLA_LINKINFO, info)
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL,
                     what=f"add veth {ifname} (peer {peer})")

    def add_link_pair(self, ifname: str, netns_fd: int, peer: str, peer_netns_fd: int) -> None:
        """Create a veth pair straight into two other namespaces: ``ifname`` in the one
        open at ``netns_fd``, its peer ``peer`` in the one at ``peer_netns_fd`` (both
        down; each name is checked against its own namespace only)."""
        peer_body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        peer_body += _attr(IFLA_IFNAME, peer.encode() + b"\0")
        peer_body += _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        info = _attr(IFLA_INFO_KIND, b"veth")
        info += _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_body))
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        body += _attr(IFLA_IFNAME, ifname.encode() + b"\0")
        body += _attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))
        body += _attr(IFLA_LINKINFO, info)
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL,
                     what=f"add veth pair {ifname}-{peer}")

    def add_address(self, ifname: str, address: str, prefixlen: int) -> None:
        """Add IPv4 ``address``/``prefixlen`` to ``ifname``."""
        packed = ipaddress.IPv4Address(address).packed
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE,
                            socket.if_nametoindex(ifname))
        body += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
        self.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL,
                     what=f"add {address}/{prefixlen} to {ifname}")

    def add_route(self, dest: str, via: str) -> None:
        """Add an IPv4 route to ``dest`` (a network, or ``default``) through ``via``."""
        net = ipaddress.IPv4Network("0.0.0.0/0" if dest == "default" else dest)
        body = _RTMSG.pack(socket.AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                           RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        if net.prefixlen:
            body += _attr(RTA_DST, net.network_address.packed)
        body += _attr(RTA_GATEWAY, ipaddress.IPv4Address(via).packed)
        self.request(RTM_NEWROUTE, body, NLM_F_CREATE | NLM_F_EXCL,
                     what=f"route {dest} via {via}")

    def dump(self, kind: int, body: bytes, partial: bool = False) -> list[bytes]:
        """The payload of every message of a dump (one the kernel marks interrupted, by a
        concurrent change, is taken again, bounded; ``partial``: taken as it is, so a
        learner changing a table without pause cannot keep a count from answering)."""
        for _ in range(DUMP_TRIES):
            got = [payload for _kind, payload in self._replies(self._send(kind, NLM_F_DUMP,
                                                                          body))]
            if partial or not self.interrupted:
                return got
        raise OSError(errno.EAGAIN, f"dump interrupted {DUMP_TRIES} times")

    def eth_addresses(self) -> dict[str, str]:
        """{alias (or name, without one): IPv4 address} of the ``eth*`` interfaces; an
        interface with several addresses gives its last in the kernel's order."""
        alias: dict[int, str] = {}
        for payload in self.dump(RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            index = _IFINFO.unpack_from(payload)[2]
            found = dict(netlink_attrs(payload[_IFINFO.size:]))
            name = _text(found.get(IFLA_IFNAME, b""))
            if name.startswith("eth"):
                alias[index] = _text(found.get(IFLA_IFALIAS, b"")) or name
        addresses: dict[str, str] = {}
        for payload in self.dump(RTM_GETADDR, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
            family, index = payload[0], _IFADDR.unpack_from(payload)[4]
            found = dict(netlink_attrs(payload[_IFADDR.size:]))
            if family == socket.AF_INET and index in alias and len(
                    found.get(IFA_ADDRESS, b"")) == 4:
                addresses[alias[index]] = socket.inet_ntoa(found[IFA_ADDRESS])
        return addresses

    def neighbour_entries(self, proxy: bool = False) -> list[tuple[int, bytes]]:
        """(NUD state, message) of each neighbour entry (ARP and NDP) of this namespace, from
        one dump, also one a concurrent change interrupted (entries made meanwhile may be
        missing: a learner adding them without pause cannot keep this from answering);
        ``proxy``: of each proxy entry instead (``ip neigh add proxy``), which the kernel
        keeps apart and lists only when asked for them alone."""
        got = [payload for _kind, payload in self._replies(self._send(
            RTM_GETNEIGH, NLM_F_DUMP, _NDMSG.pack(socket.AF_UNSPEC, 0, 0,
                                                  NTF_PROXY if proxy else 0, 0)))]
        return [(_NDMSG.unpack_from(payload)[2], payload) for payload in got
                if len(payload) >= _NDMSG.size]

    def delete_neighbour(self, entry: bytes) -> None:
        """Remove the neighbour entry ``entry`` (a message of `neighbour_entries`); one gone
        meanwhile is fine."""
        family, ifindex, _state, flags, _kind = _NDMSG.unpack_from(entry)
        dst = dict(netlink_attrs(entry[_NDMSG.size:])).get(NDA_DST)
        if dst is None:
            return
        try:
            self.request(RTM_DELNEIGH, _NDMSG.pack(family, ifindex, 0, flags & NTF_PROXY, 0)
                         + _attr(NDA_DST, dst), what="neighbour delete")
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def fdb_entries(self) -> list[bytes]:
        """Each forwarding-database entry of this namespace (``bridge fdb show``: those of
        its bridges, and the unicast and multicast address lists of its links), from one
        dump, also one a concurrent change interrupted (as ``neighbour_entries``)."""
        got = [payload for _kind, payload in self._replies(self._send(
            RTM_GETNEIGH, NLM_F_DUMP, _NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0)))]
        return [payload for payload in got if len(payload) >= _NDMSG.size]

    def link_addresses(self) -> dict[int, bytes]:
        """The hardware address of each link of this namespace, by interface index."""
        found = ((_IFINFO.unpack_from(payload)[2],
                  dict(netlink_attrs(payload[_IFINFO.size:])).get(IFLA_ADDRESS))
                 for payload in self.dump(RTM_GETLINK,
                                           _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)))
        return {index: address for index, address in found if address}

    def delete_fdb(self, entry: bytes) -> bool:
        """Remove the forwarding-database entry ``entry`` (a message of `fdb_entries`):
        from its bridge when it has one, else from its link's own address list; False
        when it was gone meanwhile or is not the kind anyone may remove."""
        _family, ifindex, state, _flags, _kind = _NDMSG.unpack_from(entry)
        found = dict(netlink_attrs(entry[_NDMSG.size:]))
        if NDA_LLADDR not in found:
            return False
        body = _NDMSG.pack(AF_BRIDGE, ifindex, state,
                           NTF_MASTER if NDA_MASTER in found else NTF_SELF, 0)
        body += _attr(NDA_LLADDR, found[NDA_LLADDR])
        if NDA_VLAN in found:
            body += _attr(NDA_VLAN, found[NDA_VLAN])
        try:
            self.request(RTM_DELNEIGH, body, what="fdb delete")
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            return False
        return True

    def tc_objects(self) -> dict[int, int]:
        """{link index: its queueing disciplines, classes and filters} of this namespace
        (links with only the kernel's default qdisc left out), from one dump of the qdiscs,
        one of the classes of each link holding any, and one of the filters attached at
        each qdisc and class (and, below an ``ingress`` or ``clsact`` qdisc, at its ingress
        and egress points)."""
        parents: dict[int, list[int]] = {}
        for payload in self._tc_dump(RTM_GETQDISC, 0, 0):
            index, handle = _TCMSG.unpack_from(payload)[1:3]
            if not handle:
                continue  # the kernel's default (noqueue, pfifo_fast): nothing to delete
            parents.setdefault(index, []).append(handle)
            if handle == TC_H_INGRESS & 0xFFFF_0000:
                parents[index] += [TC_H_INGRESS + 1, TC_H_INGRESS + 2]  # ffff:fff2, fff3
        counts: dict[int, int] = {}
        for index, handles in parents.items():
            classes = [_TCMSG.unpack_from(payload)[2]
                       for payload in self._tc_dump(RTM_GETTCLASS, index, 0)]
            counts[index] = len(handles) + len(classes) + sum(
                len(self._tc_dump(RTM_GETTFILTER, index, parent))
                for parent in [*handles, *classes])
        return counts

    def _tc_dump(self, kind: int, index: int, parent: int) -> list[bytes]:
        """The messages of one traffic-control dump (of link ``index`` at ``parent``)."""
        return [payload for _kind, payload in self._replies(self._send(
            kind, NLM_F_DUMP, _TCMSG.pack(socket.AF_UNSPEC, index, 0, parent, 0)))
            if len(payload) >= _TCMSG.size]

    def delete_root_qdiscs(self, index: int) -> None:
        """Delete the root and ingress (or clsact) queueing disciplines of link ``index``,
        and with them every class and filter below them; a link left with the kernel's
        defaults is fine."""
        for parent in (TC_H_ROOT, TC_H_INGRESS):
            try:
                self.request(RTM_DELQDISC, _TCMSG.pack(socket.AF_UNSPEC, index, 0, parent, 0),
                             what="qdisc delete")
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EINVAL):
                    raise

    def ports_down(self) -> list[str]:
        """Names of the bridge ports (links with a master) not operationally up (a dump
        the kernel marks interrupted, by a concurrent change, is taken again, bounded)."""
        for _ in range(DUMP_TRIES):
            seq = self._send(RTM_GETLINK, NLM_F_DUMP,
                             _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
            down = []
            for _kind, payload in self._replies(seq):
                found = dict(netlink_attrs(payload[_IFINFO.size:]))
                if IFLA_MASTER in found and found.get(IFLA_OPERSTATE, b"\0")[0] != IF_OPER_UP:
                    down.append(found.get(IFLA_IFNAME, b"?").rstrip(b"\0").decode())
            if not self.interrupted:
                return down
        raise OSError(errno.EAGAIN, f"link dump interrupted {DUMP_TRIES} times")


def fdb_address(entry: bytes) -> bytes | None:
    """The hardware address of forwarding-database entry ``entry`` (None: it names none)."""
    return dict(netlink_attrs(entry[_NDMSG.size:])).get(NDA_LLADDR)


def fdb_link(entry: bytes) -> int:
    """The interface index of the link forwarding-database entry ``entry`` is on."""
    return int(_NDMSG.unpack_from(entry)[1])


def _text(value: bytes) -> str:
    """A netlink string attribute (NUL-terminated or not) as text."""
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each netlink message in datagram ``data``; a header
    claiming less than itself or more than the datagram holds raises OSError (EPROTO)."""
    pos = 0
    while pos + _HDR.size <= len(data):
        size, kind, flags, seq, _pid = _HDR.unpack_from(data, pos)
        if size < _HDR.size or pos + size > len(data):
            raise OSError(errno.EPROTO, f"malformed netlink message (length {size})")
        yield kind, flags, seq, data[pos + _HDR.size:pos + size]
        pos += (size + 3) & ~3
