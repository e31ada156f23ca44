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
from forge.runtime.local.probe_identity import add_grading_sources

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


def test_a_probe_identity_never_takes_another_hosts_grading_address() -> None:
    """At seal the grading addresses are drawn first, then the probe identities: an
    identity of one host drew from the addresses its own host and the plan held, so it
    could take the address just given to another probing host of the subnet (two hosts
    answering for one address, the probes' replies going to either)."""
    prefix = runtime_prefix("g")
    office, pc = f"{prefix}.office", f"{prefix}.pc"
    # A /29: .1 to .5 drawable (.6 is the egress gateway), .1 to .4 the plan's.
    try:
        for ns, address in ((office, "10.66.2.1"), (pc, "10.66.2.2")):
            create_netns(ns)
            ip_batch(ns, ["link add eth0 type veth peer name peer0",
                          f"address add {address}/29 dev eth0", "link set eth0 up"])
        meta = {"hosts": {
            "office": {"grading_address": True, "addresses": ["10.66.2.1"]},
            "pc": {"grading_identities": ["web"], "addresses": ["10.66.2.2"]},
            "fw1": {"addresses": ["10.66.2.3"]}, "srv": {"addresses": ["10.66.2.4"]}}}
        add_grading_sources({"office": office, "pc": pc}, meta)
        # The one free address went to the office PC; none is left for pc's identity.
        office_held = [str(iface.ip) for _, iface, _ in host_addresses(office)]
        assert office_held == ["10.66.2.1", "10.66.2.5"], office_held
        pc_held = [(name, str(iface.ip)) for name, iface, _ in host_addresses(pc)]
        assert pc_held == [("eth0", "10.66.2.2")], pc_held
    finally:
        remove_netns(office)
        remove_netns(pc)
