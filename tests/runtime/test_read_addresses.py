"""``list()`` reads each host's addresses over a raw netlink socket from the calling thread
(``network.read_addresses``): the same answer pyroute2 gives, without a thread and an
asyncio loop per host (they cost ``list()`` ~8 ms of CPU per live lab)."""

from __future__ import annotations

import sys
import threading
from types import FrameType

import pytest
from pyroute2 import IPRoute

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.netns import run_in_netns
from forge.runtime.local.network import read_addresses

pytestmark = pytest.mark.root


def _two_subnets(lab_id: str) -> LabSpec:
    return LabSpec(lab_id, [SubnetSpec("front", "10.202.0.0/24"),
                            SubnetSpec("back", "10.202.1.0/24")], [
        HostSpec("gw", networks=[("front", "10.202.0.1"), ("back", "10.202.1.1")],
                 router=True),
        HostSpec("web", networks=[("front", None)]),
        HostSpec("db", networks=[("back", None)]),
        HostSpec("ops", networks=[("back", None)]),
    ])


def _by_pyroute2(ns: str) -> dict[str, str]:
    """The reference: the interfaces' aliases and IPv4 addresses as pyroute2 reads them."""

    def work(ipr: IPRoute) -> dict[str, str]:
        alias = {link["index"]: link.get("ifalias") or link.get("ifname")
                 for link in ipr.get_links() if (link.get("ifname") or "").startswith("eth")}
        return {alias[a["index"]]: a.get("address") for a in ipr.get_addr(family=2)
                if a["index"] in alias}

    return run_in_netns(ns, work)


def test_addresses_match_the_plan_and_pyroute2(rt: LocalRuntime) -> None:
    info = rt.create(_two_subnets("addrs-a"))
    try:
        for host, planned in info.hosts.items():
            ns = rt.names.host_ns("addrs-a", host)
            assert read_addresses(ns) == planned == _by_pyroute2(ns)
        listed = {i.lab_id: i for i in rt.list()}["addrs-a"]
        assert listed.hosts == info.hosts and listed.state == "running"
    finally:
        rt.destroy("addrs-a")
    assert read_addresses(rt.names.host_ns("addrs-a", "gw")) == {}  # gone: nothing


def test_addresses_are_read_without_a_thread(rt: LocalRuntime) -> None:
    rt.create(_two_subnets("addrs-b"))
    started: list[str] = []

    def seen(frame: FrameType, event: str, arg: object) -> None:
        started.append(threading.current_thread().name)
        sys.setprofile(None)  # once per new thread is enough

    try:
        threading.setprofile(seen)
        try:
            addrs = read_addresses(rt.names.host_ns("addrs-b", "gw"))
        finally:
            threading.setprofile(None)  # type: ignore[arg-type]
        assert addrs == {"front": "10.202.0.1", "back": "10.202.1.1"}
        assert started == []
    finally:
        rt.destroy("addrs-b")
