"""Attack (and a class's ordinary day): learners sweeping their subnets fill the machine's
neighbour table.

The kernel has one ARP table for the whole machine, 1,024 entries by default, and every
lab's entries count in it. A learner without any privilege makes an entry for each
address of their subnet they send to: a sweep of a /24 (``nmap -sn``, a ``for`` loop of
pings) makes 254 of them at once. Four such sweeps at the same moment filled the table:
the kernel logged ``neighbor table overflow!`` and dropped the packets of every lab (and
of the machine) waiting on an address. Now the runtime sizes the table for the labs its
node may hold at its first check (`forge.runtime.local.neighbour_table`).
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local.neighbour_table import wanted_size

from ..support.one_lab import one_lab

pytestmark = pytest.mark.root

SWEEPERS = 5
SWEEP = ("for i in $(seq 1 254); do { echo > /dev/udp/10.203.0.$i/9; } 2>/dev/null; done; "
         "ip -4 neigh show dev eth0 | wc -l")


def _table_fulls() -> int:
    """Entries the machine's ARP table refused so far (the kernel's count, all CPUs)."""
    with open("/proc/net/stat/arp_cache", encoding="ascii") as fh:
        columns = fh.readline().split()
        at = columns.index("table_fulls")
        return sum(int(line.split()[at], 16) for line in fh if line.strip())


def _thresh3() -> int:
    with open("/proc/sys/net/ipv4/neigh/default/gc_thresh3", encoding="ascii") as fh:
        return int(fh.read())


def test_a_class_sweeping_its_subnets_at_once_does_not_fill_the_neighbour_table(
        tmp_path: Path) -> None:
    lab = "ns-" + secrets.token_hex(4)
    spec = LabSpec(lab, [SubnetSpec("lan", "10.203.0.0/24")], [
        HostSpec(f"pc{n}", networks=[("lan", f"10.203.0.{200 + n}")])
        for n in range(SWEEPERS)])
    with one_lab(tmp_path / "state", spec) as rt:
        # the runtime's first check sized the table for the labs a node holds by default
        assert _thresh3() >= wanted_size(rt.lab_capacity) >= SWEEPERS * 254
        refused = _table_fulls()
        with ThreadPoolExecutor(SWEEPERS) as pool:
            swept = list(pool.map(lambda n: rt.exec(lab, f"pc{n}", ["bash", "-c", SWEEP],
                                                    timeout=60),
                                  range(SWEEPERS)))
        assert _table_fulls() == refused  # no entry refused, no packet dropped for it
        for result in swept:
            assert result.exit_code == 0, result.stderr_text
            # every address swept has its entry (its own is not a neighbour)
            assert int(result.stdout_text.split()[-1]) >= 253
