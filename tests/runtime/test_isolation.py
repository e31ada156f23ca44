"""Isolation claims of the local runtime, proven on real namespaces (root)."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import ICMP_ECHO, SERVER, probe, serve, sh, wait_ok

pytestmark = pytest.mark.root

SUBNETS = [SubnetSpec("a", "10.77.1.0/24"), SubnetSpec("b", "10.77.2.0/24")]


@pytest.fixture(scope="module")
def labs(rt: LocalRuntime) -> Iterator[tuple[str, str]]:
    """Two labs with the same CIDRs: iso-a routes a<->b through r; iso-b's r does not
    forward and iso-b has an extra host x at an address iso-a does not use."""
    a, b = "iso-a-" + secrets.token_hex(3), "iso-b-" + secrets.token_hex(3)
    cmd2, files = serve(8080, "from-h2")
    cmd3, _ = serve(9000, "from-h3")
    rt.create(LabSpec(a, SUBNETS, [
        HostSpec("h1", networks=[("a", "10.77.1.10")], routes=[("10.77.2.0/24", "10.77.1.1")],
                 files={"/srv/serve.py": SERVER, "/workspace/seed.txt": "seeded\n",
                        "/opt/forge/grade.sh": "#!/bin/sh\necho graded\n"}),
        HostSpec("r", networks=[("a", "10.77.1.1"), ("b", "10.77.2.1")], router=True),
        HostSpec("h2", networks=[("b", "10.77.2.10")], routes=[("10.77.1.0/24", "10.77.2.1")],
                 command=cmd2, files=files),
        HostSpec("h3", networks=[("a", "10.77.1.11")], command=cmd3, files=files),
        HostSpec("adm", networks=[("a", "10.77.1.12")], capabilities=["NET_ADMIN"]),
    ]))
    cmdb, _ = serve(8080, "b-h2")
    cmdx, _ = serve(7777, "b-x")
    rt.create(LabSpec(b, SUBNETS, [
        HostSpec("h1", networks=[("a", "10.77.1.10")], routes=[("10.77.2.0/24", "10.77.1.1")],
                 files=files),
        HostSpec("r", networks=[("a", "10.77.1.1"), ("b", "10.77.2.1")], router=False),
        HostSpec("h2", networks=[("b", "10.77.2.10")], routes=[("10.77.1.0/24", "10.77.2.1")],
                 command=cmdb, files=files),
        HostSpec("x", networks=[("a", "10.77.1.77")], command=cmdx, files=files),
    ]))
    assert wait_ok(rt, a, "h1", "10.77.1.11", 9000) == "ok:from-h3"
    assert wait_ok(rt, b, "r", "10.77.2.10", 8080) == "ok:b-h2"
    assert wait_ok(rt, b, "h1", "10.77.1.77", 7777) == "ok:b-x"
    yield a, b
    rt.destroy(a)
    rt.destroy(b)


def test_same_subnet_hosts_reach_each_other(rt: LocalRuntime, labs: tuple[str, str]) -> None:
    assert probe(rt, labs[0], "h1", "10.77.1.11", 9000) == "ok:from-h3"


def test_routed_subnet_is_reached_through_the_router(
    rt: LocalRuntime, labs: tuple[str, str]
) -> None:
    assert wait_ok(rt, labs[0], "h1", "10.77.2.10", 8080) == "ok:from-h2"


def test_host_without_route_cannot_reach_other_subnet(
    rt: LocalRuntime, labs: tuple[str, str]
) -> None:
    assert probe(rt, labs[0], "h3", "10.77.2.10", 8080) == "err:ENETUNREACH"


def test_non_router_does_not_forward(rt: LocalRuntime, labs: tuple[str, str]) -> None:
    # Same topology as iso-a, but r is not a router: h1's packets die at r.
    assert probe(rt, labs[1], "h1", "10.77.2.10", 8080, timeout=0.5).startswith("err:")


def test_labs_cannot_reach_each_other(rt: LocalRuntime, labs: tuple[str, str]) -> None:
    # x exists only in iso-b (reachable there, see fixture); iso-a's hosts never see it.
    assert probe(rt, labs[0], "h1", "10.77.1.77", 7777, timeout=0.5).startswith("err:")
    # iso-a's h2 answers "from-h2"; the same address in iso-b is iso-b's own host.
    assert probe(rt, labs[1], "r", "10.77.2.10", 8080) == "ok:b-h2"


@pytest.fixture()
def machine_listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP listener on the machine (all addresses, random port) recording connections."""
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    seen: list[object] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, peer = srv.accept()
            except OSError:
                continue
            seen.append(peer)
            conn.sendall(b"machine")
            conn.close()

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    yield srv.getsockname()[1], seen
    stop.set()
    worker.join()
    srv.close()


def _machine_addresses() -> list[str]:
    with IPRoute() as ipr:
        return [a.get("address") for a in ipr.get_addr(family=socket.AF_INET)]


def test_lab_cannot_reach_machine_services(
    rt: LocalRuntime, labs: tuple[str, str], machine_listener: tuple[int, list[object]]
) -> None:
    port, seen = machine_listener
    addrs = _machine_addresses()
    assert "127.0.0.1" in addrs
    # Positive control: the listener answers on every machine address from the machine.
    for addr in addrs:
        with socket.create_connection((addr, port), timeout=2) as conn:
            assert conn.recv(10) == b"machine"
    control = len(seen)
    for host in ("h1", "r", "adm"):
        assert probe(rt, labs[0], host, "127.0.0.1", port) == "err:ECONNREFUSED"
        for addr in addrs:
            if addr != "127.0.0.1":
                assert probe(rt, labs[0], host, addr, port) == "err:ENETUNREACH"
    assert len(seen) == control


def test_lab_has_no_way_out(rt: LocalRuntime, labs: tuple[str, str]) -> None:
    # 192.0.2.1 is TEST-NET-1: nothing is sent, the lab simply has no route to it.
    for host in ("h1", "h2", "r"):
        assert probe(rt, labs[0], host, "192.0.2.1", 80) == "err:ENETUNREACH"
    routes = rt.exec(labs[0], "h1", ["ip", "-4", "route"]).stdout_text
    assert "default" not in routes
    links = rt.exec(labs[0], "r", ["ip", "-o", "link"]).stdout_text
    assert sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()) == [
        "eth0", "eth1", "lo"]


def test_ping_works_without_cap_net_raw(rt: LocalRuntime, labs: tuple[str, str]) -> None:
    res = rt.exec(labs[0], "h1", ["python3", "-c", ICMP_ECHO, "10.77.1.11"])
    assert res.stdout_text.strip() == "reply", res.stderr_text
    res = rt.exec(labs[0], "h1", ["python3", "-c", ICMP_ECHO, "10.77.2.10"])
    assert res.stdout_text.strip() == "reply", res.stderr_text
    status = rt.exec(labs[0], "h1", ["grep", "CapEff", "/proc/self/status"]).stdout_text
    assert status.split()[1] == "0000000000000000"


def test_capabilities_dropped_unless_approved(rt: LocalRuntime, labs: tuple[str, str]) -> None:
    add = ["ip", "link", "add", "probe0", "type", "bridge"]
    denied = rt.exec(labs[0], "h1", add)
    assert denied.exit_code != 0
    assert "Operation not permitted" in denied.stderr_text
    allowed = rt.exec(labs[0], "adm", add)
    assert allowed.exit_code == 0, allowed.stderr_text
    status = rt.exec(labs[0], "adm", ["cat", "/proc/self/status"]).stdout_text
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapEff"], 16) == 1 << 12  # CAP_NET_ADMIN only
    assert int(fields["CapBnd"], 16) == 1 << 12
    assert fields["NoNewPrivs"].strip() == "1"
    # The service process (started by the init) is just as constrained: it keeps only the
    # service mark (CAP_WAKE_ALARM, which keeps the learner out of its memory).
    svc = rt.exec(labs[0], "h3", ["sh", "-c", "grep -E 'CapEff|NoNewPrivs' "
                                  "/proc/$(pgrep -fx 'python3 /srv/serve.py 9000 from-h3')/status"])
    assert f"{1 << 35:016x}" in svc.stdout_text and "NoNewPrivs:\t1" in svc.stdout_text
    # The approved capability stays inside the host: the machine has no such link.
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname="probe0")


def test_filesystem_is_read_only_except_host_dirs(
    rt: LocalRuntime, labs: tuple[str, str]
) -> None:
    lab = labs[0]
    for path in ("/usr/forge-x", "/etc/forge-x", "/forge-x"):
        res = rt.exec(lab, "h1", ["touch", path])
        assert res.exit_code != 0, path
    assert "Read-only file system" in rt.exec(lab, "h1", ["touch", "/usr/x"]).stderr_text
    marker = "fgmark-" + secrets.token_hex(4)
    for d in ("/workspace", "/home", "/srv", "/tmp"):
        assert rt.exec(lab, "h1", ["sh", "-c", f"echo {marker} > {d}/{marker}"]).exit_code == 0
    # /tmp is private to the lab host; /workspace persists on the lab's own disk.
    assert not os.path.exists(f"/tmp/{marker}")
    data_dir = rt.names.data_dir(lab, "h1")
    with open(os.path.join(data_dir, "workspace", marker)) as fh:
        assert fh.read() == marker + "\n"
    assert rt.exec(lab, "h1", ["cat", "/workspace/seed.txt"]).stdout == b"seeded\n"
    assert rt.exec(lab, "h1", ["test", "-x", "/srv/serve.py"]).exit_code == 0
    # Platform files (e.g. graders) are seeded read-only and stay root's.
    assert rt.exec(lab, "h1", ["/opt/forge/grade.sh"]).stdout == b"graded\n"
    assert rt.exec(lab, "h1", ["stat", "-c", "%u", "/opt/forge/grade.sh"]).stdout == b"0\n"
    for script in ("echo x > /opt/forge/grade.sh", "touch /opt/forge/new", "rm /opt/forge/grade.sh"):
        assert sh(rt, lab, "h1", script).exit_code != 0, script
    # The operator's data is not visible.
    assert rt.exec(lab, "h1", ["cat", "/etc/shadow"]).stdout == b""
    for hidden in ("/root", "/work", str(rt.names.state_dir)):
        assert rt.exec(lab, "h1", ["test", "-e", hidden]).exit_code != 0, hidden


def test_lab_user_cannot_change_the_machine(rt: LocalRuntime, labs: tuple[str, str]) -> None:
    # Lab processes are not uid 0: global sysctls and root-owned files are out of reach.
    with open("/proc/sys/kernel/panic") as fh:
        before = fh.read()
    res = sh(rt, labs[0], "adm", "echo 7 > /proc/sys/kernel/panic")
    assert res.exit_code != 0 and "Permission denied" in res.stderr_text
    res = sh(rt, labs[0], "h1", "echo 1 > /proc/sys/net/ipv4/ip_forward")
    assert res.exit_code != 0  # without an approved NET_ADMIN, not even its own namespace
    with open("/proc/sys/kernel/panic") as fh:
        assert fh.read() == before
    assert rt.exec(labs[0], "h1", ["id", "-un"]).stdout == b"learner\n"


def test_private_pid_and_uts_namespaces(rt: LocalRuntime, labs: tuple[str, str]) -> None:
    res = rt.exec(labs[0], "h2", ["sh", "-c", "hostname; ls /proc | grep -c '^[0-9]'"])
    name, count = res.stdout_text.split()
    assert name == "h2"
    assert int(count) < 10  # bwrap, init, service, this shell: not the machine's processes
    assert rt.exec(labs[0], "h2", ["test", "-e", f"/proc/{os.getpid()}/status"]).exit_code


@pytest.mark.root
def test_name_lookups_fail_fast_without_lab_dns(
    rt: LocalRuntime, labs: tuple[str, str]
) -> None:
    """A lab has no resolver: a lookup fails at once instead of waiting on the machine's DNS.

    Without a nameserver line the C resolver asks 127.0.0.1:53 of the lab's own network
    namespace, where nothing listens: the query is refused at once, it never waits on a
    server that does not answer.
    """
    lab = labs[0]
    hosts = rt.exec(lab, "h1", ["cat", "/etc/hosts", "/etc/resolv.conf"], timeout=10)
    assert "localhost" in hosts.stdout_text and "nameserver" not in hosts.stdout_text
    script = ("import socket\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "s.settimeout(10)\n"
              "s.connect(('127.0.0.1', 53))\n"
              "s.send(b'\\0' * 12)\n"
              "try: s.recv(512); print('answered')\n"
              "except ConnectionRefusedError: print('refused')\n"
              "except TimeoutError: print('silent')\n"
              "try: socket.gethostbyname('example.invalid'); print('resolved')\n"
              "except socket.gaierror: print('failed')\n")
    result = rt.exec(lab, "h1", ["python3", "-c", script], timeout=30)
    assert result.exit_code == 0 and not result.timed_out, result.stderr_text
    assert result.stdout_text.split() == ["refused", "failed"]
