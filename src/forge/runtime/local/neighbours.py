"""Keeping a learner's neighbour entries from holding the machine's neighbour table.

The kernel keeps one neighbour table (ARP, NDP) for the whole machine. Entries a learner
with CAP_NET_ADMIN adds as ``permanent`` are never garbage-collected and are not charged
to the lab's memory cgroup: 20,000 of them took half a second and ~10 MB of kernel memory,
held for the lab's life, and nothing bounded how many. Learned entries are collected, but
not while they are a few seconds old: such a learner can give their host an address in a
``/8`` and send to one new address after another (19,000 a second from a bash loop), and
every lab and the machine itself then finds the table full (``neighbour_table`` sizes it).
``trim`` reads the machine's entry counts (one small /proc read per table) and only past
``GUARD_ENTRIES`` looks into each NET_ADMIN host: a host holding more than ``HOST_LIMIT``
permanent entries, or more than ``LEARNED_LIMIT`` learned ones, has those removed. Proxy
entries (``ip neigh add proxy``) are kept apart, in no count the machine shows, with no
limit and never collected (10,000 took 0.5 MB the lab's cgroup did not see): each host's
are looked at on every pass (one small dump), and more than ``HOST_LIMIT`` are removed. A lab
needs a handful (a static ARP entry or two; a sweep of a ``/24`` learns 254): thousands
are a flood.

A host's forwarding-database entries (``bridge fdb``) are a third kind, also counted
nowhere the machine shows and charged to no lab: the 256-address cap of the lab's own
bridges (``rtnl.BRIDGE_FDB_MAX_LEARNED``) does not apply to a bridge the learner makes in
their host (``ip link add br0 type bridge``), which learned 2,000 addresses in 0.4 s, nor to
entries added by hand (``bridge fdb add … master static``: 5,000 in 0.14 s, never aged;
``… dev eth0 self``: the link's own address list, no bridge needed). Each host's are looked
at on every pass (one small dump), and past ``FDB_LIMIT`` every entry but each link's own
address on that link is removed.
"""

from __future__ import annotations

import functools

from forge.runtime.local.netns import in_netns
from forge.runtime.local.rtnl import NUD_PERMANENT, Rtnl, fdb_address, fdb_link

GUARD_ENTRIES = 2048  # machine-wide entries below which no lab is looked at
HOST_LIMIT = 256  # permanent entries one lab host may keep
FDB_LIMIT = 1_024  # bridge forwarding entries one lab host may hold (its links need a few)
LEARNED_LIMIT = 4_096  # learned entries one lab host may hold at once (16 sweeps of a /24)
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


def _trim_here(limit: int, learned_limit: int, entries: bool) -> int:
    """In the calling thread's namespace: remove every proxy entry when there are more than
    ``limit``, and given ``entries``, every permanent neighbour entry when there are more
    than ``limit`` and every learned one when there are more than ``learned_limit``; how
    many were removed."""
    with Rtnl() as rtnl:
        proxies = [entry for _state, entry in rtnl.neighbour_entries(proxy=True)]
        doomed = proxies if len(proxies) > limit else []
        if entries:
            found = rtnl.neighbour_entries()
            permanent = [entry for state, entry in found if state & NUD_PERMANENT]
            # every other entry, NOARP ones too: added with `extern_learn`, the kernel never
            # collects them either
            learned = [entry for state, entry in found if not state & NUD_PERMANENT]
            doomed += ((permanent if len(permanent) > limit else [])
                       + (learned if len(learned) > learned_limit else []))
        for entry in doomed:
            rtnl.delete_neighbour(entry)
        return len(doomed) + _trim_fdb(rtnl)


def _trim_fdb(rtnl: Rtnl) -> int:
    """Remove every forwarding-database entry but each link's own address on that link
    when the namespace holds more than ``FDB_LIMIT``; how many were removed. (Any link's
    address on any other link would be kept too: every bridge times every link, uncounted.)"""
    found = rtnl.fdb_entries()
    if len(found) <= FDB_LIMIT:
        return 0
    own = rtnl.link_addresses()
    return sum(1 for entry in found
               if fdb_address(entry) != own.get(fdb_link(entry)) and rtnl.delete_fdb(entry))


def trim_host(namespace: str, limit: int = HOST_LIMIT, entries: bool = True) -> int:
    """``_trim_here`` in the lab host's network namespace ``namespace``."""
    return in_netns(namespace, functools.partial(_trim_here, limit, LEARNED_LIMIT, entries))
