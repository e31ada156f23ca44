"""Gaming the vlan-segment lab from the switch: a flat network dressed up as segmented.

The learner's switch (NET_ADMIN) puts every port in one bridge, so every PC reaches every
other, then fakes isolation for the PCs the grader probes from: it claims the other
department's office addresses itself and drops (bridge-family nftables) the real PCs' ARP
replies towards pc1. pc1 then resolves those addresses to the switch, whose kernel
refuses the connection: a grader that counts "not connected" as isolated scored the
isolation criterion (4/6 for a flat network). The grader now counts only silence (a
timeout) as isolation and requires the switch to hold no office address.

A lab-test gaming entry cannot hold this test: it needs the departments of the scenario
and asserts which criterion the grader credits, with the switch state shown in place.
Real LocalRuntime, the shipped template, graded as the orchestrator grades.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forge.authoring.harness import Harness

from ..support.shipped_labs import shipped_harness

pytestmark = pytest.mark.root

FLAT_AND_SPOOFED = r"""
set -euo pipefail
declare -A dept
for j in 0 1 2 3; do
  dept[$j]=$(timeout 2 nc -w 2 "10.66.$((j + 1)).2" 7000 </dev/null | awk '{print $2}')
done
ip link add br0 type bridge
ip link set dev br0 up
for j in 0 1 2 3; do ip link set dev "eth$j" master br0; done
nft add table bridge spoof
nft add chain bridge spoof f '{ type filter hook forward priority 0; policy accept; }'
for j in 1 2 3; do
  [ "${dept[$j]}" = "${dept[0]}" ] && continue
  ip addr add "10.66.100.1$((j + 1))/24" dev br0
  nft add rule bridge spoof f iifname "eth$j" oifname eth0 ether type arp drop
done
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Labs of the shipped vlan-segment template on a runtime of this module's own."""
    with shipped_harness(tmp_path_factory.mktemp("vlan"), "vlan-segment", "v",
                         (("pc1", "7000"), ("pc2", "7000"), ("pc3", "7000"), ("pc4", "7000"))) as h:
        yield h


def test_switch_answering_for_the_other_department_is_not_isolation(harness: Harness) -> None:
    run = harness.launch()
    run.must(FLAT_AND_SPOOFED, "the spoofing switch")
    # In place: pc1 gets an answer from every office address (its colleague's banner,
    # a refusal from the switch for the other department's), none stays silent.
    probe = run.sh("for n in 2 3 4; do timeout 0.5 bash -c "
                   "\"exec 3<>/dev/tcp/10.66.100.1$n/7000\" 2>&1; echo \"pc$n $?\"; done", "pc1")
    assert probe.stdout_text.count(" 124") == 0, probe.stdout_text
    assert "refused" in probe.stdout_text.lower(), probe.stdout_text
    graded = run.grade()
    assert graded.passed["same-vlan-reach"], graded
    assert not graded.passed["vlans-isolated"], graded
    assert not graded.passed["switch-built"], graded
    assert graded.score == pytest.approx(1 / 3, abs=1e-6)
