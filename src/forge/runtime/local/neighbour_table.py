"""Sizing the machine's neighbour tables (ARP, NDP) for the labs a node holds.

The kernel keeps one neighbour table per family for the whole machine, every namespace's
entries together, and refuses new ones past ``gc_thresh3`` (1,024 by default) while the
entries it holds were all made or changed in the last few seconds: it logs ``neighbor
table overflow!`` and drops the packet waiting for the address. A learner without any
privilege makes one entry per address of their subnet they send to (254 for a ``/24``, in
a sweep such as ``nmap -sn``), so four learners sweeping at once left every other lab on
the machine, and the machine itself, unable to reach an address it had not just used; a
learner with NET_ADMIN, who may give their host an address in a ``/8``, made 19,000 new
entries a second from a bash loop (each held about 3 s before the kernel may drop it:
~57,000 at once). As kube-proxy sizes the connection-tracking table for the node, the
runtime raises ``gc_thresh3`` (and ``gc_thresh2``, the level where collection starts, to
half of it) at its first check to ``PER_LAB`` entries for each lab the node may hold and
at least ``FLOOR``; it never lowers a value an operator set, and says in one line what it
changed, or what to set when the machine's ``/proc/sys`` cannot be written (a container).
A host that keeps more than that is trimmed by the reaper (module ``neighbours``).
"""

from __future__ import annotations

import os

PER_LAB = 256  # a sweep of one /24 subnet, the largest the shipped labs give a host
FLOOR = 1 << 17  # above what one NET_ADMIN flood keeps at once (~57,000), ~60 MB if all used
LARGEST = 1 << 20  # ~0.5 GB of kernel memory were every entry in use
TABLES = ("/proc/sys/net/ipv4/neigh/default", "/proc/sys/net/ipv6/neigh/default")


def wanted_size(labs: int) -> int:
    """The ``gc_thresh3`` a node holding ``labs`` labs needs."""
    return min(LARGEST, max(FLOOR, labs * PER_LAB))


def _read(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read(32).strip())
    except (OSError, ValueError):
        return None


def _write(path: str, value: int) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(f"{value}\n")


def size_tables(labs: int, tables: tuple[str, ...] = TABLES) -> list[tuple[bool, str]]:
    """Raise each neighbour table in ``tables`` (a ``neigh/default`` folder of procfs) to
    what ``labs`` labs need; for each table changed (True) or that could not be (False),
    the line that says so."""
    want = wanted_size(labs)
    said: list[tuple[bool, str]] = []
    for folder in tables:
        family = os.path.basename(os.path.dirname(os.path.dirname(folder))) or folder
        thresh3 = _read(os.path.join(folder, "gc_thresh3"))
        thresh2 = _read(os.path.join(folder, "gc_thresh2"))
        if thresh3 is None or thresh2 is None:
            continue  # no such family here (IPv6 off), or no procfs: nothing to size
        if thresh3 >= want:
            continue
        try:  # the limit first: refused, nothing was changed
            _write(os.path.join(folder, "gc_thresh3"), want)
            if thresh2 < want // 2:
                _write(os.path.join(folder, "gc_thresh2"), want // 2)
        except OSError as exc:
            said.append((False,
                f"net.{family}.neigh.default.gc_thresh3 is {thresh3} and could not be "
                f"raised ({exc.strerror or exc}): a few learners sweeping their subnets at "
                f"once fill the machine's neighbour table and every lab then loses "
                f"addresses it had not just used; set it to {want} (and gc_thresh2 to "
                f"{want // 2}) with sysctl -w and in /etc/sysctl.d"))
            continue
        said.append((True,
            f"raised net.{family}.neigh.default.gc_thresh3 from {thresh3} to {want} (and "
            f"gc_thresh2 to at least {want // 2}) for {labs} labs: the machine's neighbour "
            "table holds every lab's entries; keep it with a file in /etc/sysctl.d"))
    return said
