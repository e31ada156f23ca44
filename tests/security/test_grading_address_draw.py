"""A learner cannot use up the addresses a grading address is drawn from.

nft-firewall's learner has NET_ADMIN on the router fw1, which sits on the office and
Internet-side subnets. The grading address a probing host gets at seal was drawn from the
subnet's addresses that no host's interface held: a learner who added every free address
of the office subnet to fw1 beforehand left none to draw, so the office PC probed from its
named address alone and a ruleset denying exactly that address passed again. Now the
lab's plan, not what a learner's host holds, says which addresses are taken.
"""

from __future__ import annotations

import ipaddress

import pytest

from forge.runtime.local.grading_address import add_grading_addresses, host_addresses
from forge.runtime.local.netns import create_netns, ip_batch, remove_netns

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root

NET = ipaddress.IPv4Network("10.66.1.0/24")
OFFICE, ROUTER, GATEWAY = "10.66.1.10", "10.66.1.1", "10.66.1.254"


def test_a_router_holding_every_free_address_leaves_one_to_draw() -> None:
    prefix = runtime_prefix("g")
    office, router = f"{prefix}.office", f"{prefix}.fw1"
    try:
        create_netns(office)
        create_netns(router)
        ip_batch(office, ["link add eth0 type veth peer name peer0", f"address add {OFFICE}/24 dev eth0",
                          "link set eth0 up"])
        # The learner's router: its own address, then every other one of the subnet but
        # the office PC's and the egress gateway's.
        hoard = [str(a) for a in NET.hosts() if str(a) not in (OFFICE, ROUTER, GATEWAY)]
        ip_batch(router, ["link add eth0 type veth peer name peer0", f"address add {ROUTER}/24 dev eth0",
                          "link set eth0 up", *(f"address add {a}/32 dev lo" for a in hoard)])
        meta = {"hosts": {
            "office": {"grading_address": True, "addresses": [OFFICE]},
            "fw1": {"grading_address": False, "addresses": [ROUTER]}}}
        added = add_grading_addresses({"office": office, "fw1": router}, meta)
        assert list(added) == ["office"] and len(added["office"]) == 1, added
        pick = added["office"][0]
        assert ipaddress.IPv4Address(pick) in NET and pick not in (OFFICE, ROUTER, GATEWAY)
        held = [(name, str(iface.ip), secondary) for name, iface, secondary in
                host_addresses(office)]
        assert held == [("eth0", OFFICE, False), ("eth0", pick, True)], held
        # A second seal (a regrade) keeps the address the first one drew.
        assert add_grading_addresses({"office": office, "fw1": router}, meta) == {}
    finally:
        remove_netns(office)
        remove_netns(router)
