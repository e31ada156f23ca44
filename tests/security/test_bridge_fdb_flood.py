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

That cap is set on the bridges the runtime makes; a NET_ADMIN learner makes their own in
their host (`ip link add br0 type bridge`), which learned 2,000 addresses in 0.4 s, and
`bridge fdb add … master static` (5,000 in 0.14 s, never aged) or `… dev eth0 self` (the
link's own address list, no bridge needed) add entries no cap counts: kernel memory
charged to no lab, for the lab's life. Now the reaper's neighbour trim also looks at each
NET_ADMIN host's forwarding database and, past `neighbours.FDB_LIMIT` entries, removes all
but its links' own addresses.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime, rtnl

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


# eth0's own address on the learner's port too: any link's address on any other link was
# kept, so every bridge the learner makes times every link's address escaped the trim.
OWN_BRIDGE = ("ip link add br0 type bridge && ip link add v0 type veth peer name v1 && "
              "ip link set v0 master br0 && set -- $(ip -br link show dev eth0) && "
              "bridge fdb add $3 dev v0 master static && exec bridge -batch -")


def _own_bridge_flood(static: int, self_entries: int) -> bytes:
    """`bridge -batch` lines adding ``static`` entries to the learner's bridge (OWN_BRIDGE)
    and ``self_entries`` to eth0's own address list."""
    lines = "".join(f"fdb add 02:dd:00:00:{i // 256:02x}:{i % 256:02x} dev v0 master static\n"
                    for i in range(static))
    lines += "".join(f"fdb add 02:ee:00:00:{i // 256:02x}:{i % 256:02x} dev eth0 self "
                     "permanent\n" for i in range(self_entries))
    return lines.encode()


def _host_fdb(rt: LocalRuntime, lab: str) -> list[str]:
    return rt.exec(lab, "flood", ["bridge", "fdb", "show"]).stdout_text.splitlines()


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

        # A bridge the learner makes in their own host has no such cap, and entries added
        # by hand are counted by none: the reaper's trim takes them back.
        assert rt.trim_neighbours() == []  # a host's own few entries are left alone
        static, own_list = 1_100, 200  # past neighbours.FDB_LIMIT together
        made = rt.exec(lab, "flood", ["bash", "-c", OWN_BRIDGE],
                       stdin=_own_bridge_flood(static, own_list))
        assert made.exit_code == 0, made.stderr_text
        before = _host_fdb(rt, lab)
        assert len(before) > static + own_list, len(before)  # before: kept for the lab's life
        trimmed = rt.trim_neighbours()
        assert [(lab_id, host) for lab_id, host, _ in trimmed] == [(lab, "flood")], trimmed
        assert trimmed[0][2] >= static + own_list, trimmed
        after = _host_fdb(rt, lab)
        assert not [line for line in after if line.startswith(("02:dd:", "02:ee:"))], after
        eth0 = rt.exec(lab, "flood", ["ip", "-br", "link", "show", "dev", "eth0"]).stdout_text
        assert not [line for line in after if line.startswith(f"{eth0.split()[2]} dev v0")], \
            after
        assert len(after) < 20, after
        # The bridge's own port address stays (the kernel's entry for the learner's link).
        assert any("master br0 permanent" in line for line in after), after
        assert rt.trim_neighbours() == []
