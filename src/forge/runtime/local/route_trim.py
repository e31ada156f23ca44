"""Keeping a learner's routes and addresses from holding the machine's memory.

A learner with CAP_NET_ADMIN may add routes and addresses to their host's namespace; the
kernel keeps them outside the lab's memory cgroup and bounds them by nothing: 100,000
routes with distinct metrics took about 25 MB, 20,000 ``/32`` addresses about 6 MB, held
for the lab's life. ``trim_host`` counts a host's IPv4 addresses and routes (every table)
and, past ``HOST_LIMIT``, deletes each but the runtime's own: the addresses the plan gave
the host's ``ethN`` (and ``lo``'s), the routes the kernel made for those, and the
template's routes (``planned_routes``), at most one route each. A lab's routing exercise
needs a handful. IPv6 too: no lab is given any (the runtime turns it off on every link but
``lo``), yet ``lo`` takes routes and addresses, and a learner may turn it on for a link:
30,000 IPv6 routes took 20 MB of kernel memory (12 MB of it charged to no lab), 10,000
addresses 22 MB (14 MB). Past ``HOST_LIMIT`` of either, each is deleted but ``lo``'s
``::1`` and its local route, all the namespace started with.

Only an unsealed lab is trimmed (``trim_fence``): at seal the runtime adds the grading
addresses, probe identities and their routing tables, which nothing here recognises.
What is deleted before the seal, the learner could have deleted themselves.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct

from filelock import FileLock

from forge.private_lock import private_lock
from forge.runtime.local.netns import in_netns
from forge.runtime.local.rtnl import Rtnl, netlink_attrs

HOST_LIMIT = 4_096  # addresses, and routes, of each IP version one lab host may hold
RTM_DELADDR, RTM_GETADDR, RTM_DELROUTE, RTM_GETROUTE = 21, 22, 25, 26
IFA_ADDRESS, IFA_LOCAL = 1, 2
LOOPBACK6 = socket.inet_pton(socket.AF_INET6, "::1")
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST = 1, 2, 3
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol,
#                                       scope, type, flags
FENCE = "net-trim.lock"  # in the lab's directory: held by a trim, and by seal's additions
Key = tuple[object, ...]


def _addresses(rtnl: Rtnl) -> list[tuple[bytes, int, str, int]]:
    """(message, interface index, address, prefix length) of each IPv4 address."""
    found = []
    for payload in rtnl.dump(RTM_GETADDR, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0),
                             partial=True):
        _family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(payload)
        local = dict(netlink_attrs(payload[_IFADDR.size:])).get(IFA_LOCAL)
        if local is not None and len(local) == 4:
            found.append((payload, index, socket.inet_ntoa(local), prefixlen))
    return found


def _route_key(payload: bytes) -> tuple[Key, bool]:
    """What tells the runtime's routes apart (table, type, destination, gateway, and the
    interface of one without a gateway), and whether the route could be one of them (tos
    and metric 0, the kernel's and the runtime's)."""
    _f, dst_len, _s, tos, table, _proto, _scope, kind, _fl = _RTMSG.unpack_from(payload)
    attrs = dict(netlink_attrs(payload[_RTMSG.size:]))
    if RTA_TABLE in attrs:
        table = struct.unpack("=I", attrs[RTA_TABLE][:4])[0]
    dst = socket.inet_ntoa(attrs.get(RTA_DST, bytes(4))[:4].ljust(4, b"\0"))  # none: 0/0
    gateway = socket.inet_ntoa(attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None
    oif = struct.unpack("=I", attrs[RTA_OIF][:4])[0] if RTA_OIF in attrs and not gateway \
        else None
    metric = struct.unpack("=I", attrs[RTA_PRIORITY][:4])[0] if RTA_PRIORITY in attrs else 0
    return (table, kind, f"{dst}/{dst_len}", gateway, oif), tos == 0 and metric == 0


def _trim_ipv6(rtnl: Rtnl) -> int:
    """Past ``HOST_LIMIT`` IPv6 addresses, turn IPv6 off on each link holding any, and on
    again on ``lo`` (which takes back ``::1`` alone): deleting them one by one walked the
    whole IPv6 table for each (5,000 took 3.6 s of CPU, the switch 28 ms). Then past
    ``HOST_LIMIT`` IPv6 routes (every table), delete all but the local route of ``::1``
    (once). How many addresses and routes went."""
    lo = socket.if_nametoindex("lo")
    ask_addresses = _IFADDR.pack(socket.AF_INET6, 0, 0, 0, 0)
    ask_routes = _RTMSG.pack(socket.AF_INET6, 0, 0, 0, 0, 0, 0, 0, 0)
    addresses = rtnl.dump(RTM_GETADDR, ask_addresses, partial=True)
    routes = rtnl.dump(RTM_GETROUTE, ask_routes, partial=True)
    if len(addresses) <= HOST_LIMIT and len(routes) <= HOST_LIMIT:
        return 0
    held = len(addresses) + len(routes)
    if len(addresses) > HOST_LIMIT:
        for index in sorted({_IFADDR.unpack_from(payload)[4] for payload in addresses}):
            try:
                name = socket.if_indextoname(index)
            except OSError:
                continue  # gone meanwhile
            _ipv6_off(name, True)
            if index == lo:
                _ipv6_off(name, False)
        routes = rtnl.dump(RTM_GETROUTE, ask_routes, partial=True)
    if len(routes) > HOST_LIMIT:
        loopback: tuple[object, ...] | None = (RT_TABLE_LOCAL, RTN_LOCAL, LOOPBACK6, 128, lo)
        for payload in routes:
            _f, dst_len, _s, _t, table, _p, _sc, kind, _fl = _RTMSG.unpack_from(payload)
            attrs = dict(netlink_attrs(payload[_RTMSG.size:]))
            if RTA_TABLE in attrs:
                table = struct.unpack("=I", attrs[RTA_TABLE][:4])[0]
            oif = struct.unpack("=I", attrs[RTA_OIF][:4])[0] \
                if len(attrs.get(RTA_OIF, b"")) >= 4 else None
            if loopback is not None and (table, kind, attrs.get(RTA_DST), dst_len,
                                         oif) == loopback:
                loopback = None  # kept, once
                continue
            _delete(rtnl, RTM_DELROUTE, payload, "route delete")
    left = (len(rtnl.dump(RTM_GETADDR, ask_addresses, partial=True))
            + len(rtnl.dump(RTM_GETROUTE, ask_routes, partial=True)))
    return max(0, held - left)


def _ipv6_off(link: str, off: bool) -> None:
    """Turn IPv6 off (``off``) or on for ``link`` of the calling thread's namespace (its
    ``/proc/sys/net`` is that namespace's)."""
    with open(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6", "w", encoding="ascii") as fh:
        fh.write("1" if off else "0")


def _expected_routes(kept: list[tuple[int, str, int]],
                     planned_routes: list[tuple[str, str]]) -> set[Key]:
    """The keys (``_route_key``) of the routes the kernel makes for the ``kept`` addresses
    (interface index, address, prefix length) and of the template's routes."""
    keys: set[Key] = set()
    for index, address, prefixlen in kept:
        net = ipaddress.IPv4Network(f"{address}/{prefixlen}", strict=False)
        keys.add((RT_TABLE_LOCAL, RTN_LOCAL, f"{address}/32", None, index))
        if prefixlen < 32:
            keys.add((RT_TABLE_MAIN, RTN_UNICAST, str(net), None, index))
            keys.add((RT_TABLE_LOCAL, RTN_LOCAL, str(net), None, index))  # lo's 127/8
        if prefixlen < 31:
            keys.add((RT_TABLE_LOCAL, RTN_BROADCAST, f"{net.broadcast_address}/32", None,
                      index))
    for dest, via in planned_routes:
        net = ipaddress.IPv4Network("0.0.0.0/0" if dest == "default" else dest)
        keys.add((RT_TABLE_MAIN, RTN_UNICAST, str(net), via, None))
    return keys


def _index(name: str) -> int | None:
    """The index of interface ``name`` here, None without one (a learner renamed it)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _delete(rtnl: Rtnl, kind: int, payload: bytes, what: str) -> bool:
    """Delete the object a dump gave as ``payload`` (the message itself names it); whether
    it was there still."""
    try:
        rtnl.request(kind, payload, what=what)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL):
            return False  # gone meanwhile (with its primary address, say)
        raise
    return True


def _trim_here(planned: list[str], planned_routes: list[tuple[str, str]]) -> int:
    """In the calling thread's namespace: past ``HOST_LIMIT`` IPv4 addresses, delete all
    but the ``planned`` ones (``ethN``'s, in order) and ``lo``'s; then past ``HOST_LIMIT``
    IPv4 routes, all but the runtime's (one per ``_expected_routes`` key); then IPv6's
    (``_trim_ipv6``); how many went."""
    removed = 0
    with Rtnl() as rtnl:
        own = {(index, address) for index, address in
               ((_index(f"eth{j}"), address) for j, address in enumerate(planned))
               if index is not None}
        own.add((socket.if_nametoindex("lo"), "127.0.0.1"))
        addresses = _addresses(rtnl)
        if len(addresses) > HOST_LIMIT:
            for payload, index, address, _len in addresses:
                if (index, address) not in own:
                    removed += _delete(rtnl, RTM_DELADDR, payload, "address delete")
            addresses = _addresses(rtnl)
        kept = [(index, address, prefixlen) for _p, index, address, prefixlen in addresses
                if (index, address) in own]
        routes = rtnl.dump(RTM_GETROUTE, _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0),
                           partial=True)
        if len(routes) > HOST_LIMIT:
            expected = _expected_routes(kept, planned_routes)
            for payload in routes:
                key, plain = _route_key(payload)
                if plain and key in expected:
                    expected.discard(key)  # one each: an appended copy is the learner's
                    continue
                removed += _delete(rtnl, RTM_DELROUTE, payload, "route delete")
        removed += _trim_ipv6(rtnl)
    return removed


def trim_host(namespace: str, planned: list[str], planned_routes: list[tuple[str, str]]) -> int:
    """``_trim_here`` in the lab host's network namespace ``namespace``."""
    return in_netns(namespace, lambda: _trim_here(planned, planned_routes))


def trim_fence(lab_dir: str) -> FileLock:
    """The lock seal holds while it adds the lab's grading addresses and identities (waiting
    out a trim under way), so no trim deletes them: one takes it first (``try_fence``) and
    then trims only a lab without the sealed marker, which seal writes before it."""
    return private_lock(os.path.join(lab_dir, FENCE))


def make_fence(lab_dir: str) -> None:
    """Create ``trim_fence``'s lock file (at build: a trim never creates it, so none can
    leave a file in a state directory a destroy is removing)."""
    os.close(os.open(os.path.join(lab_dir, FENCE), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                     0o600))


def try_fence(lab_dir: str) -> int | None:
    """A descriptor holding ``trim_fence``'s lock when it is free now (close it to let go),
    else None: seal is adding the lab's grading sources, another trim runs, or the lab has
    no lock file (being destroyed, or made before this release)."""
    try:
        fd = os.open(os.path.join(lab_dir, FENCE), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
