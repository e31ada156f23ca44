"""Subnets joining exactly two hosts are one veth pair between them, without a bridge.

Which subnets are wired so (``network.point_to_point``: two different hosts, no egress
gateway), and, on a real lab, that such a link carries traffic the moment ``create``
returns (a bridge port needed a wait for its carrier), routes through a router on both
sides, leaves the switch without a bridge, and sits next to a bridged subnet of three.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.netns import netns_path
from forge.runtime.local.network import bridged, point_to_point
from forge.runtime.local.tools import tool
from forge.runtime.plan import plan_lab
from tests.runtime.helpers import ICMP_ECHO, leftovers, serve, wait_ok

SUBNETS = [SubnetSpec("a", "10.81.1.0/24"), SubnetSpec("b", "10.81.2.0/24")]


def netplus(lab_id: str, command: str | None = None, **extra: object) -> LabSpec:
    """client (a) -> router (a, b) -> server (b)."""
    return LabSpec(lab_id, SUBNETS, [
        HostSpec("client", networks=[("a", "10.81.1.10")],
                 routes=[("10.81.2.0/24", "10.81.1.1")]),
        HostSpec("router", networks=[("a", "10.81.1.1"), ("b", "10.81.2.1")], router=True),
        HostSpec("server", networks=[("b", "10.81.2.10")],
                 routes=[("10.81.1.0/24", "10.81.2.1")], command=command),
    ], **extra)  # type: ignore[arg-type]


def test_two_host_subnets_are_point_to_point() -> None:
    plan = plan_lab(netplus("p2p-plan"))
    ends = {i: [(h.spec.name, j) for h, j in pair] for i, pair in point_to_point(plan).items()}
    assert ends == {0: [("client", 0), ("router", 0)], 1: [("router", 1), ("server", 0)]}
    assert not bridged(plan)


def test_a_third_host_or_an_egress_gateway_keeps_the_bridge() -> None:
    spec = netplus("p2p-three")
    spec.hosts.append(HostSpec("extra", networks=[("a", "10.81.1.20")]))
    plan = plan_lab(spec)
    assert list(point_to_point(plan)) == [1] and bridged(plan)
    gateway = plan_lab(netplus("p2p-egress", egress="allowlist", allowlist_profile="web"))
    assert point_to_point(gateway) == {} and bridged(gateway)



def _links(ns: str) -> list[str]:
    out = subprocess.run([tool("nsenter"), f"--net={netns_path(ns)}", "--", tool("ip"),
                          "-o", "link", "show"], capture_output=True, text=True, check=True)
    return [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()]


@pytest.fixture
def lab(rt: LocalRuntime) -> Iterator[str]:
    lab_id = "p2p-" + secrets.token_hex(3)
    command, files = serve(8080, "from-server")
    spec = netplus(lab_id, command)
    spec.hosts[2].files.update(files)
    rt.create(spec)
    yield lab_id
    if lab_id in [i.lab_id for i in rt.list()]:
        rt.destroy(lab_id)


@pytest.mark.root
def test_a_point_to_point_link_carries_traffic_as_soon_as_the_lab_exists(
        rt: LocalRuntime, lab: str) -> None:
    # One try each, no wait: both ends were up before create returned.
    for host, addr in (("client", "10.81.1.1"), ("server", "10.81.2.1"),
                       ("router", "10.81.2.10")):
        res = rt.exec(lab, host, ["python3", "-c", ICMP_ECHO, addr], timeout=10)
        assert res.stdout_text.strip() == "reply", (host, addr, res.stderr_text)
    assert wait_ok(rt, lab, "client", "10.81.2.10", 8080) == "ok:from-server"
    assert not os.path.exists(netns_path(rt.names.switch_ns(lab)))  # no switch at all
    assert sorted(_links(rt.names.host_ns(lab, "router"))) == ["eth0", "eth1", "lo"]


@pytest.mark.root
def test_a_lab_without_a_switch_is_found_running_after_a_restart_and_leaves_nothing(
        prefix: str, state_root: Path, rt: LocalRuntime, lab: str) -> None:
    """A runtime started again on the same state (the orchestrator restarted) finds the
    lab running, not degraded, though it has no switch namespace; its teardown leaves
    nothing of the lab behind."""
    again = LocalRuntime(str(state_root), prefix=prefix)
    try:
        assert [i.state for i in again.list() if i.lab_id == lab] == ["running"]
        assert wait_ok(again, lab, "client", "10.81.2.10", 8080) == "ok:from-server"
        again.destroy(lab)
        assert lab not in [i.lab_id for i in again.list()]
        assert not [x for x in leftovers(prefix, str(state_root)) if lab in x]
    finally:
        again.close()
