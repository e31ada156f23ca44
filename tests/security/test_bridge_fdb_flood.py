"""Attack: a learner with NET_ADMIN teaches the lab switch's bridge endless addresses.

A subnet of three or more hosts is a bridge in the lab's switch namespace, which the
machine owns: every source address the bridge learns is an entry of kernel memory there,
charged to no lab and kept for the ageing time (300 s). From nft-firewall's learner router
(NET_ADMIN, TEAM plan), `arp_notify` on and `ip -batch` of 20,000 `link set dev eth1
address …` lines (each change sends a gratuitous ARP from the new address) taught the
`office` bridge 20,000 addresses in 5.3 s while the lab's memory cgroup did not move:
~1 million held at that rate, per link. Now every lab bridge is created with
`fdb_max_learned` (Linux 6.8+), so it learns at most `rtnl.BRIDGE_FDB_MAX_LEARNED`
addresses; past that it floods frames for the others, and the subnet keeps working.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import rtnl

from ..support.one_lab import one_lab

pytestmark = pytest.mark.root

CHANGES = 600


def _flood() -> str:
    """A shell script changing eth0's address CHANGES times, announcing each one."""
    lines = "".join(f"link set dev eth0 address 02:bb:00:00:{i // 256:02x}:{i % 256:02x}\\n"
                    for i in range(CHANGES))
    return ("echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_notify && "
            f"printf '{lines}' | ip -batch -")


def _learned(switch_ns: str) -> int:
    """Addresses the switch's bridges learned (not their own ports' permanent ones)."""
    out = subprocess.run(["ip", "netns", "exec", switch_ns, "bridge", "fdb", "show"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.startswith("02:bb:"))


def test_a_lab_bridge_learns_a_bounded_number_of_addresses(tmp_path: Path) -> None:
    lab = "fdb-" + secrets.token_hex(4)
    spec = LabSpec(lab, [SubnetSpec("lan", "10.204.0.0/24")], [
        HostSpec("flood", networks=[("lan", "10.204.0.10")], capabilities=["NET_ADMIN"]),
        HostSpec("peer", networks=[("lan", "10.204.0.11")]),
        HostSpec("third", networks=[("lan", "10.204.0.12")]),
    ])
    with one_lab(tmp_path / "state", spec) as rt:
        flooded = rt.exec(lab, "flood", ["bash", "-c", _flood()], timeout=120)
        assert flooded.exit_code == 0, flooded.stderr_text
        learned = _learned(rt.names.switch_ns(lab))
        assert 0 < learned < CHANGES, learned  # before: every address, kept 300 s
        assert learned <= rtnl.BRIDGE_FDB_MAX_LEARNED < CHANGES, learned
        # Past the cap the bridge floods what it did not learn: the subnet still works
        # (a refused connection is an answer from the flooding host, through the bridge).
        reached = rt.exec(lab, "peer", ["bash", "-c", "exec 3<>/dev/tcp/10.204.0.10/9"],
                          timeout=30)
        assert "Connection refused" in reached.stderr_text, reached.stderr_text
