"""The one-machine rehearsal (issue 15 item 7): `forge up --nodes N --nats-cluster 3`.

Real processes: `forge up` as a subprocess, real nats-servers clustered on loopback, real
orchestrators with the local runtime (netns), PostgreSQL for the journey. The refusals run
the `up` command in-process (they must start nothing, so there is nothing to wait for).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from forge.cli import up as up_command
from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.stack.journey import Journey
from forge.stack.topology import node_prefix

from ..conftest import TEMPLATE_FIXTURES
from ..support.prefixes import stack_prefix
from ..support.proc import alive
from .test_up import Up, bound, pids_of, some_ports, wait_for

NODE_ROW = re.compile(r"^\s*(\S+)\s+(node-\d)\s+(http://\S+)\s+yes\s", re.M)
NATS_ROW = re.compile(r"^\s*(nats-\d)\s+(tls://\S+)\s+yes\s", re.M)


def descendants(root: int) -> set[int]:
    """Every live process below `root` (by parent pid)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def cmdline_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def netns_with(prefixes: list[str]) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.split(".", 1)[0] in prefixes]


def env_file(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / "forge.env"
    path.write_text(f"FORGE_TEMPLATE_DIR={TEMPLATE_FIXTURES}\nFORGE_RUNTIME_PREFIX={prefix}\n"
                    "DEV_ALLOW_XPLAN=true\nDEV_ALLOW_HEADERS=true\n")
    return path


def forge_cli() -> typer.Typer:
    """A `forge` app with only the `up` command, run in-process."""
    cli = typer.Typer()
    cli.callback()(lambda: None)
    up_command.register(cli)
    return cli


def one_host_lab(lab_id: str, cidr: str) -> LabSpec:
    return LabSpec(lab_id, [SubnetSpec("a", cidr)], [HostSpec("h", networks=[("a", None)])])


@pytest.mark.root
def test_two_lab_nodes_on_a_three_server_nats_cluster_start_report_and_leave_nothing(
        tmp_path: Path) -> None:
    base = stack_prefix("r", 2)
    prefixes = [node_prefix(base, 1), node_prefix(base, 2)]
    storage = tmp_path / "storage"
    up = Up(storage, env_file(tmp_path, base), some_ports(),
            extra=("--nodes", "2", "--nats-cluster", "3"))
    try:
        up.wait_up()
        err = up.err
        assert "2 lab node(s) · 3 NATS server(s)" in err and "store: SQLite" in err
        nodes = {node: (name, url) for name, node, url in NODE_ROW.findall(err)}
        assert set(nodes) == {"node-1", "node-2"}
        assert nodes["node-1"] == ("orchestrator", up.urls["orchestrator"])  # node 1 keeps it
        nats_rows = dict(NATS_ROW.findall(err))
        assert set(nats_rows) == {"nats-1", "nats-2", "nats-3"}
        cluster_url = ",".join(nats_rows[f"nats-{i}"] for i in (1, 2, 3))
        children = descendants(up.proc.pid)
        assert len(up.nats_pids()) == 3
        # Every node answers on its own URL from its own process, with its own identity.
        node_pids = {}
        for node, (_, url) in nodes.items():
            health = httpx.get(f"{url}/healthz", timeout=5).json()
            assert health["service"] == "orchestrator" and health["pid"] in children
            node_pids[node] = health["pid"]
            env = environ_of(health["pid"])
            assert env["FORGE_NODE_ID"] == node and env["FORGE_NODE_URL"] == url
            assert env["FORGE_RUNTIME_PREFIX"] == prefixes[int(node[-1]) - 1]
        assert node_pids["node-1"] != node_pids["node-2"]
        # Every service is given the whole cluster and three replicas.
        services = [pid for pid in children if "forge serve" in cmdline_of(pid)]
        assert len(services) == 4
        for pid in services:
            env = environ_of(pid)
            assert env["NATS_URL"] == cluster_url and env["FORGE_NATS_REPLICAS"] == "3"
            assert env["FORGE_NATS_CA"] == str(storage / "nats-tls" / "ca.pem")
        # A cluster member that dies is reported and started again on its port and store.
        [victim] = pids_of(f"nats-server -c {storage}/nats-cluster/n1/")
        os.kill(victim, signal.SIGKILL)
        port2 = nats_rows["nats-2"].rsplit(":", 1)[1]
        wait_for(lambda: f"nats-server nats-2 restarted on port {port2}" in up.err, 60,
                 "nats-2 restarted")
        assert "nats-server nats-2 exited with code -9; restarting" in up.err
        [again] = pids_of(f"nats-server -c {storage}/nats-cluster/n1/")
        assert again != victim and bound(int(port2))
        children = descendants(up.proc.pid)
        # Spawn work reaches a node and becomes a running lab under one of the prefixes.
        learner = {"x-client-id": "amy", "x-tenant-id": "uni"}
        # A server of the cluster was just killed and restarted: while JetStream settles
        # its leaders the API answers 503 bus_unavailable "retry" (nothing charged), and a
        # client retries as told (bounded).
        deadline = time.monotonic() + 30
        while True:
            spawn = httpx.post(f"{up.urls['spawn']}/v1/spawn", json={"track": "netplus"},
                               headers={**learner, "x-plan": "PRO"}, timeout=30)
            if spawn.status_code != 503 or time.monotonic() > deadline:
                break
            assert spawn.json()["error"] == "bus_unavailable", spawn.text
            time.sleep(0.5)
        assert spawn.status_code == 201, spawn.text
        state_url = f"{up.urls['spawn']}/v1/scenarios/{spawn.json()['scenario_id']}"
        wait_for(lambda: httpx.get(state_url, headers=learner, timeout=5).json()["state"]
                 == "running", 60, "lab running")
        # A lab under each node's prefix (as each node's runtime builds them).
        for i, prefix in enumerate(prefixes):
            runtime = LocalRuntime(str(storage / "runtime"), prefix)
            runtime.create(one_host_lab(f"rehearsal-{i}", f"10.7{i}.0.0/24"))
            runtime.close()
        assert {n.split(".", 1)[0] for n in netns_with(prefixes)} == set(prefixes)
        up.proc.send_signal(signal.SIGTERM)
        up.proc.wait(timeout=60)
    finally:
        up.stop()
    assert up.proc.returncode == 0, up.err[-2000:]
    assert "destroyed 3 lab(s)" in up.err  # the default with several nodes: tear down
    assert not any(alive(pid) for pid in children)
    assert netns_with(prefixes) == []
    assert not any(bound(int(url.rsplit(":", 1)[1])) for _, url in nodes.values())
    assert not any(bound(int(url.rsplit(":", 1)[1])) for url in nats_rows.values())
    assert sorted(p.name for p in (storage / "nats-cluster").iterdir()) == ["n0", "n1", "n2"]


@pytest.mark.no_store  # refused before any store is opened (the test asserts nothing started)
@pytest.mark.parametrize(("args", "flag", "extra_env"), [
    (("--nodes", "0"), "--nodes", {}), (("--nodes", "99"), "--nodes", {}),
    (("--nats-cluster", "2"), "--nats-cluster", {}),
    (("--nodes", "2", "--keep-labs"), "--keep-labs", {}),
    (("--nats-cluster", "3"), "--nats-cluster",
     {"NATS_URL": "nats://127.0.0.1:4222"}),  # an external NATS
    (("--nats-cluster", "3", "--nats-port", "65530"), "--nats-port 65530", {}),
    # A prefix whose derived node prefix is itself: refused before a key or secret is made
    # (rehearsal CL: it wrote a dev signing key and secrets first).
    (("--nodes", "2"), "FORGE_RUNTIME_PREFIX=abcn2 collides",
     {"FORGE_RUNTIME_PREFIX": "abcn2"}),
])
def test_an_impossible_topology_is_refused_by_flag_and_nothing_starts(
        tmp_path: Path, args: tuple[str, ...], flag: str, extra_env: dict[str, str]) -> None:
    storage = tmp_path / "storage"
    ports = some_ports()
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("FORGE_", "NATS_"))}
    env.update(extra_env)
    result = CliRunner().invoke(forge_cli(), [
        "up", "--storage", str(storage), "--spawn-port", str(ports["spawn"]),
        "--orchestrator-port", str(ports["orchestrator"]), "--scoreboard-port",
        str(ports["scoreboard"]), *args], env=env)
    assert result.exit_code == 2, result.output
    assert f"forge up: {flag}" in result.output
    assert "Forge is up" not in result.output
    assert not storage.exists()  # no lock, no key, no log, no NATS store
    assert not any(bound(p) for p in ports.values())


@pytest.mark.root
def test_journey_on_two_nodes_a_nats_cluster_separate_roots_and_postgresql_verifies(
        tmp_path: Path, postgres_url: str) -> None:
    """The whole rehearsal shape: 2 lab nodes, 3 NATS servers, a STORAGE_ROOT per service
    and node, PostgreSQL; a journey ends in a verdict that verifies offline from the
    scoreboard's own root (evidence crossed the bus, not a shared directory)."""
    storage = tmp_path / "storage"
    base = stack_prefix("j", 2)
    path = tmp_path / "forge.env"
    path.write_text(f"FORGE_RUNTIME_PREFIX={base}\n")
    up = Up(storage, path, some_ports(),
            extra=("--nodes", "2", "--nats-cluster", "3", "--separate-storage",
                   "--teardown-labs"),
            env_extra={"FORGE_DB_URL": postgres_url})
    try:
        up.wait_up()
        assert "store: PostgreSQL" in up.err and "3 NATS server(s)" in up.err
        services = [pid for pid in descendants(up.proc.pid) if "forge serve" in cmdline_of(pid)]
        assert len(services) == 4
        assert all(environ_of(pid)["FORGE_DB_URL"] == postgres_url for pid in services)
        assert len({environ_of(pid)["STORAGE_ROOT"] for pid in services}) == 4
        result = Journey(up.urls["spawn"], up.urls["scoreboard"],
                         storage / "roots" / "scoreboard", timeout_s=90).run()
        assert result.verified and result.score == 1.0
        assert not (storage / "forge.db").exists()  # no process fell back to SQLite
    finally:
        up.stop()
    assert up.proc.returncode == 0, up.err[-2000:]
    assert up.nats_pids() == [] and netns_with([base, base[:3] + "n2"]) == []
