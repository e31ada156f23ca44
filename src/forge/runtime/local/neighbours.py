"""Keeping a learner's permanent neighbour entries from holding the machine's memory.

The kernel keeps one neighbour table (ARP, NDP) for the whole machine. Entries a learner
with CAP_NET_ADMIN adds as ``permanent`` are never garbage-collected and are not charged
to the lab's memory cgroup: 20,000 of them took half a second and ~10 MB of kernel memory,
held for the lab's life, and nothing bounded how many. ``trim`` reads the machine's entry
counts (one small /proc read per table) and only past ``GUARD_ENTRIES`` looks into each
NET_ADMIN host: a host holding more than ``HOST_LIMIT`` permanent entries has them removed.
A lab needs a handful (a static ARP entry or two); hundreds are a flood.
"""

from __future__ import annotations

import functools

from forge.runtime.local.netns import in_netns
from forge.runtime.local.rtnl import Rtnl

GUARD_ENTRIES = 2048  # machine-wide entries below which no lab is looked at
HOST_LIMIT = 256  # permanent entries one lab host may keep
STAT_FILES = ("/proc/net/stat/arp_cache", "/proc/net/stat/ndisc_cache")


def machine_entries() -> int:
    """Entries in the machine's neighbour tables now (every namespace's together)."""
    total = 0
    for path in STAT_FILES:
        try:
            with open(path, encoding="ascii") as fh:
                fh.readline()  # the column names
                total += int(fh.readline().split()[0], 16)
        except (OSError, ValueError, IndexError):
            continue
    return total


def _trim_here(limit: int) -> int:
    """In the calling thread's namespace: remove every permanent neighbour entry when
    there are more than ``limit``; how many were removed."""
    with Rtnl() as rtnl:
        entries = rtnl.permanent_neighbours()
        if len(entries) <= limit:
            return 0
        for entry in entries:
            rtnl.delete_neighbour(entry)
        return len(entries)


def trim_host(namespace: str, limit: int = HOST_LIMIT) -> int:
    """``_trim_here`` in the lab host's network namespace ``namespace``."""
    return in_netns(namespace, functools.partial(_trim_here, limit))
