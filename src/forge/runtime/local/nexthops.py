"""Keeping a learner's nexthop objects from holding the machine's memory.

A learner with CAP_NET_ADMIN may add nexthop objects to their host's namespace (``ip
nexthop add id N via …``); the kernel allocates them outside the lab's memory cgroup and
bounds them by nothing but their 32-bit ids: from a learner host, ``ip -batch`` of 100,000
``nexthop add`` lines took 5.7 s and 30 MB of the machine's unreclaimable kernel memory
(``kmalloc-192``, never ``kmalloc-cg-192``) while the lab's cgroup did not move, held for
the lab's life: a gigabyte in about three minutes. ``trim_host`` counts a host's nexthops
and, past ``HOST_LIMIT``, deletes every one of them (with the routes through them): the
host's routing goes back to its plain routes. A lab's routing exercise needs a handful.
"""

from __future__ import annotations

import errno
import socket
import struct

from forge.runtime.local.netns import in_netns
from forge.runtime.local.rtnl import Rtnl, netlink_attrs

HOST_LIMIT = 1_024  # nexthop objects one lab host may hold
RTM_DELNEXTHOP, RTM_GETNEXTHOP = 105, 106
NHA_ID = 1
_NHMSG = struct.Struct("=BBBBI")  # family, scope, protocol, reserved, flags


def _nexthop_ids(rtnl: Rtnl) -> list[int]:
    """The id of each nexthop object of the namespace, from one dump, also one a concurrent
    change interrupted (nexthops made meanwhile may be missing)."""
    ids: list[int] = []
    for payload in rtnl.dump(RTM_GETNEXTHOP, _NHMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0),
                             partial=True):
        value = dict(netlink_attrs(payload[_NHMSG.size:])).get(NHA_ID, b"")
        if len(value) >= 4:
            ids.append(struct.unpack_from("=I", value)[0])
    return ids


def _trim_here() -> int:
    """In the calling thread's namespace: delete every nexthop object when there are more
    than ``HOST_LIMIT``; how many there were then (0: none deleted)."""
    with Rtnl() as rtnl:
        ids = _nexthop_ids(rtnl)
        if len(ids) <= HOST_LIMIT:
            return 0
        for nh_id in ids:
            try:
                rtnl.request(RTM_DELNEXTHOP, _NHMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                             + struct.pack("=HHI", 8, NHA_ID, nh_id), what="nexthop delete")
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # gone meanwhile (a group's member, say)
                    raise
        return len(ids)


def trim_host(namespace: str) -> int:
    """``_trim_here`` in the lab host's network namespace ``namespace``."""
    return in_netns(namespace, _trim_here)
