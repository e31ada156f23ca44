"""Keeping a learner's traffic-control objects from holding the machine's memory.

A learner with CAP_NET_ADMIN may add queueing disciplines and classes to their host's
links (``tc qdisc add``, ``tc class add``); the kernel allocates them outside the lab's
memory cgroup: 9,000 ``htb`` classes on eth0 took about 26 MB of the machine's
unreclaimable kernel memory while the lab's cgroup did not move, held for the lab's life
(one ``htb`` qdisc takes 65,535 classes, and a link any number of qdiscs below them);
9,000 ``u32`` filters took about 2 MB more. ``trim_host`` counts a host's qdiscs, classes
and filters (``Rtnl.tc_objects``) and, past ``HOST_LIMIT``, deletes the root and ingress
qdiscs of each of its links, which frees everything below them (classes, filters): the
links go back to the kernel's defaults. A lab's shaping exercise needs a handful.
"""

from __future__ import annotations

from forge.runtime.local.netns import in_netns
from forge.runtime.local.rtnl import Rtnl

HOST_LIMIT = 1_024  # queueing disciplines, classes and filters one lab host may hold


def _trim_here() -> int:
    """In the calling thread's namespace: delete every link's root and ingress qdiscs
    when its qdiscs, classes and filters together are more than ``HOST_LIMIT``; how many
    objects there were then (0: none deleted)."""
    with Rtnl() as rtnl:
        counts = rtnl.tc_objects()
        total = sum(counts.values())
        if total <= HOST_LIMIT:
            return 0
        for index in counts:
            rtnl.delete_root_qdiscs(index)
        return total


def trim_host(namespace: str) -> int:
    """``_trim_here`` in the lab host's network namespace ``namespace``."""
    return in_netns(namespace, _trim_here)
