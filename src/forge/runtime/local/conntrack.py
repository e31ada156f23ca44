"""Keeping a learner's connection-tracking entries from holding the machine's memory.

A host whose learner has CAP_NET_ADMIN may load an nftables rule that needs connection
tracking (``ct state …``, as nft-firewall asks) and set its own namespace's timeouts
(``net.netfilter.nf_conntrack_udp_timeout``). The kernel then keeps one entry per flow,
and counts them per namespace against the machine's ``nf_conntrack_max`` (262,144 here):
entries are not charged to the lab's memory cgroup, so one host could hold 64 MiB of
kernel memory outside its lab's limit for the lab's life (20,000 one-packet UDP "flows"
to its own loopback took 5 MB, the lab's cgroup saw none of it; ccna has four such hosts).
``trim`` reads the machine's entry count (one line of /proc/slabinfo) and only past
``GUARD_ENTRIES`` looks into each NET_ADMIN host: a host holding more than ``HOST_LIMIT``
entries has its table flushed (over ctnetlink, as ``conntrack -F`` does). A lab's own
traffic needs a few dozen; thousands are a flood.
"""

from __future__ import annotations

import functools
import struct

from forge.runtime.local.netns import in_netns
from forge.runtime.local.rtnl import Rtnl

GUARD_ENTRIES = 16_384  # machine-wide entries below which no lab is looked at
HOST_LIMIT = 4_096  # entries one lab host may keep
SLABINFO = "/proc/slabinfo"
NETLINK_NETFILTER = 12
_CTNETLINK = 1 << 8  # NFNL_SUBSYS_CTNETLINK in a message type's high byte
IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET_STATS = 2, 5
CTA_STATS_GLOBAL_ENTRIES = 1
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id
_UNSPEC_V0 = _NFGEN.pack(0, 0, 0)  # every family (version 0: a flush takes them all)


def machine_entries() -> int | None:
    """Connection-tracking entries in the machine now (every namespace's together, from
    the ``nf_conntrack`` slab); None when that cannot be read (look at every host)."""
    try:
        with open(SLABINFO, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("nf_conntrack "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return 0  # no slab: connection tracking was never used on this machine


def _count(nl: Rtnl) -> int:
    """Entries of the calling thread's namespace (ctnetlink's statistics)."""
    for found in nl.nfnl_ask(_CTNETLINK | IPCTNL_MSG_CT_GET_STATS, _UNSPEC_V0):
        value = found.get(CTA_STATS_GLOBAL_ENTRIES, b"")
        if len(value) == 4:
            return int(struct.unpack("!I", value)[0])
    return 0


def _trim_here(limit: int) -> int:
    """In the calling thread's namespace: flush the connection-tracking table when it holds
    more than ``limit`` entries; how many it held."""
    with Rtnl(NETLINK_NETFILTER) as nl:
        held = _count(nl)
        if held <= limit:
            return 0
        nl.request(_CTNETLINK | IPCTNL_MSG_CT_DELETE, _UNSPEC_V0, what="conntrack flush")
        return held


def trim_host(namespace: str, limit: int | None = None) -> int:
    """``_trim_here`` in the lab host's network namespace ``namespace`` (``limit``:
    ``HOST_LIMIT`` unless given)."""
    return in_netns(namespace, functools.partial(
        _trim_here, HOST_LIMIT if limit is None else limit))
