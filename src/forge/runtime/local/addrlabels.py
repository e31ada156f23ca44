"""Keeping a learner's IPv6 address labels from holding the machine's memory.

A learner with CAP_NET_ADMIN may add address labels (RFC 6724's policy table) to their
host's namespace (``ip addrlabel add prefix … label N``); the kernel allocates each outside
the lab's memory cgroup and bounds them by nothing: from a learner host, ``ip -batch`` of
40,000 ``addrlabel add`` lines took 0.4 s and 40,000 objects of ``kmalloc-64`` (never the
cgroup-charged kind) while the lab's cgroup did not move, held for the lab's life.
``trim_host`` counts a host's labels and, past ``HOST_LIMIT``, deletes every one but the
kernel's own (``KERNEL_LABELS``, which each namespace starts with): the host's source
address selection goes back to the default. A lab needs a handful, if any.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from forge.runtime.local.netns import in_netns
from forge.runtime.local.rtnl import Rtnl, netlink_attrs

HOST_LIMIT = 1_024  # address labels one lab host may hold
RTM_DELADDRLABEL, RTM_GETADDRLABEL = 73, 74
IFAL_ADDRESS, IFAL_LABEL = 1, 2
_IFAL = struct.Struct("=BBBBII")  # family, reserved, prefixlen, flags, ifindex, seq
# The table every namespace starts with (net/ipv6/addrlabel.c): (prefix, label), all links.
KERNEL_LABELS = frozenset((ipaddress.IPv6Network(prefix), label) for prefix, label in (
    ("::/0", 1), ("fc00::/7", 5), ("fec0::/10", 11), ("2002::/16", 2), ("3ffe::/16", 12),
    ("2001::/32", 6), ("2001:10::/28", 7), ("::ffff:0:0/96", 4), ("::/96", 3),
    ("::1/128", 0)))


def _entry(payload: bytes) -> tuple[ipaddress.IPv6Network, int] | None:
    """(prefix, label) of a dumped label that applies to every link; None for one bound
    to a link or one the kernel sent short."""
    if len(payload) < _IFAL.size:
        return None
    _family, _res, prefixlen, _flags, ifindex, _seq = _IFAL.unpack_from(payload)
    attrs = dict(netlink_attrs(payload[_IFAL.size:]))
    address, label = attrs.get(IFAL_ADDRESS, b""), attrs.get(IFAL_LABEL, b"")
    if ifindex or len(address) != 16 or len(label) != 4 or prefixlen > 128:
        return None
    prefix = ipaddress.IPv6Network((ipaddress.IPv6Address(address), prefixlen), strict=False)
    return prefix, struct.unpack("=I", label)[0]


def _trim_here() -> int:
    """In the calling thread's namespace: delete every address label but the kernel's own
    when there are more than ``HOST_LIMIT``; how many were deleted (0: none)."""
    with Rtnl() as rtnl:
        labels = rtnl.dump(RTM_GETADDRLABEL, _IFAL.pack(socket.AF_INET6, 0, 0, 0, 0, 0),
                           partial=True)
        if len(labels) <= HOST_LIMIT:
            return 0
        removed = 0
        for payload in labels:
            if _entry(payload) in KERNEL_LABELS:
                continue
            try:  # the dumped message names the label as the delete wants it
                rtnl.request(RTM_DELADDRLABEL, payload, what="address label delete")
                removed += 1
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ESRCH):  # gone meanwhile
                    raise
        return removed


def trim_host(namespace: str) -> int:
    """``_trim_here`` in the lab host's network namespace ``namespace``."""
    return in_netns(namespace, _trim_here)
