"""Allowlisted egress through a gateway namespace with NAT and nftables (root).

The "outside world" is a namespace this test creates, holding TEST-NET-3 addresses on
its loopback; nothing is ever sent to a real outside address.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import AllowRule, EgressProfile, LocalRuntime
from forge.runtime.local.netns import create_netns, remove_netns, run_in_netns
from tests.runtime.helpers import leftovers, probe, serve, wait_ok

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root

ALLOWED, OTHER = "203.0.113.10", "203.0.113.11"


class Outside:
    """Listeners on ALLOWED and OTHER (ports 8080, 8081) inside a private namespace."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.peers: list[str] = []
        self.stop = threading.Event()

        def setup(ipr: IPRoute) -> list[socket.socket]:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            socks = []
            for addr in (ALLOWED, OTHER):
                ipr.addr("add", index=lo, address=addr, prefixlen=32)
                for port in (8080, 8081):
                    s = socket.socket()
                    s.bind((addr, port))
                    s.listen(8)
                    s.settimeout(0.1)
                    socks.append(s)
            return socks

        self.socks = run_in_netns(ns, setup)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            for s in self.socks:
                try:
                    conn, peer = s.accept()
                except OSError:
                    continue
                self.peers.append(peer[0])
                conn.sendall(b"allowed")
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            s.close()


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[LocalRuntime, Outside]]:
    prefix = runtime_prefix("e")
    out_ns = f"fgtest-out-{secrets.token_hex(3)}"
    create_netns(out_ns)
    outside = Outside(out_ns)
    profile = EgressProfile("web", (AllowRule(f"{ALLOWED}/32", "tcp", (8080,)),))
    rt = LocalRuntime(str(tmp_path / "state"), prefix=prefix, profiles={"web": profile},
                      egress_netns=out_ns)
    try:
        yield rt, outside
    finally:
        for info in rt.list():
            rt.destroy(info.lab_id)
        outside.close()
        leaks = leftovers(prefix, str(tmp_path / "state"))
        links = run_in_netns(out_ns, lambda ipr: [x.get("ifname") for x in ipr.get_links()])
        remove_netns(out_ns)
        assert leaks == []
        assert links == ["lo"]


def test_allowlist_lets_through_only_the_profile(world: tuple[LocalRuntime, Outside]) -> None:
    rt, outside = world
    cmd, files = serve(9000, "inside")
    info = rt.create(LabSpec("egress-1", [SubnetSpec("a", "10.63.0.0/24")], [
        HostSpec("box", networks=[("a", None)], command=cmd, files=files),
    ], egress="allowlist", allowlist_profile="web"))
    box = info.hosts["box"]["a"]
    assert wait_ok(rt, "egress-1", "box", ALLOWED, 8080) == "ok:allowed"
    # NAT: the outside sees the gateway's uplink address, never the lab's.
    assert outside.peers and box not in outside.peers
    seen = len(outside.peers)

    before = rt.egress_denied("egress-1")
    assert probe(rt, "egress-1", "box", OTHER, 8080, timeout=0.5) == "err:timeout"
    assert probe(rt, "egress-1", "box", ALLOWED, 8081, timeout=0.5) == "err:timeout"
    assert len(outside.peers) == seen
    assert rt.egress_denied("egress-1") >= before + 2

    # Nothing outside may open a connection into the lab, even with a route to it.
    uplink = rt.names.uplink("egress-1")

    def attempt(ipr: IPRoute) -> str:
        index = ipr.link_lookup(ifname=uplink)[0]
        ours = ipr.get_addr(index=index, family=socket.AF_INET)[0].get("address")
        gateway = ours[: ours.rfind(".") + 1] + str(int(ours.rsplit(".", 1)[1]) + 1)
        ipr.route("add", dst="10.63.0.0/24", gateway=gateway)
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect((box, 9000))
            return "connected"
        except OSError as exc:
            return type(exc).__name__
        finally:
            s.close()

    assert run_in_netns(outside.ns, attempt) in ("TimeoutError", "ConnectionRefusedError")


def test_deny_lab_next_to_allowlist_lab_has_no_route(
    world: tuple[LocalRuntime, Outside],
) -> None:
    rt, _outside = world
    rt.create(LabSpec("deny-1", [SubnetSpec("a", "10.64.0.0/24")],
                      [HostSpec("box", networks=[("a", None)])]))
    assert probe(rt, "deny-1", "box", ALLOWED, 8080) == "err:ENETUNREACH"


def test_uplink_that_vanishes_during_teardown_is_not_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel deletes the uplink pair on its own once the gateway namespace goes, so
    the end found by the lookup may be gone by the delete; teardown must not fail then."""
    from forge.runtime.local import egress
    from forge.runtime.local.kernel_names import Names, validate_prefix

    ns = f"fgtest-up-{secrets.token_hex(3)}"
    create_netns(ns)
    try:
        class StaleLookup(IPRoute):  # type: ignore[misc]
            def link_lookup(self, **spec: object) -> list[int]:
                return [987654]  # an index that no longer exists

        monkeypatch.setattr("forge.runtime.local.netns.IPRoute", StaleLookup)
        egress.remove_uplink(Names(validate_prefix("eabcd"), "/state"), "lab1", ns)
    finally:
        remove_netns(ns)
