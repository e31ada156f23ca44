"""`forge up`: everything starts, a crashed service is restarted, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from forge.content import content_path
from forge.runtime.local import LocalRuntime
from forge.stack.monitor_guard import table_name

from ..conftest import TEMPLATE_FIXTURES
from ..live_server import distinct_ports, free_port
from ..support.prefixes import runtime_prefix
from ..support.proc import alive

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


def pids_of(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def bound(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_up_supervises_and_stops_cleanly(tmp_path: Path) -> None:
    ports = some_ports()
    prefix = runtime_prefix("u")
    storage = tmp_path / "storage"
    env_file = tmp_path / "forge.env"
    # Heartbeats every 0.5 s: the orchestrator killed below takes its node record over
    # after 1.5 s of standing still, not 6 s (the default 2 s heartbeat).
    env_file.write_text(f"# test env\nFORGE_TEMPLATE_DIR={TEMPLATE_FIXTURES}\n"
                        f"export FORGE_RUNTIME_PREFIX='{prefix}'\nDEV_ALLOW_XPLAN=true\n"
                        "DEV_ALLOW_HEADERS=true\nFORGE_NODE_HEARTBEAT_S=0.5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forge", "up", "--storage", str(storage), "--env-file",
         str(env_file), "--spawn-port", str(ports["spawn"]), "--orchestrator-port",
         str(ports["orchestrator"]), "--scoreboard-port", str(ports["scoreboard"]),
         "--teardown-labs"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("Forge is up" in line for line in lines), 90, "'Forge is up'")
        assert all(ready(u) for u in urls.values())
        spawn = httpx.post(f"{urls['spawn']}/v1/spawn", json={"track": "netplus"}, timeout=30,
                           headers={"x-client-id": "amy", "x-tenant-id": "uni",
                                    "x-plan": "PRO"})
        assert spawn.status_code == 201, spawn.text
        sid = spawn.json()["scenario_id"]
        runtime = LocalRuntime(str(storage / "runtime"), prefix)
        state_url = f"{urls['spawn']}/v1/scenarios/{sid}"
        learner = {"x-client-id": "amy", "x-tenant-id": "uni"}
        wait_for(lambda: httpx.get(state_url, headers=learner, timeout=5).json()["state"]
                 == "running", 60, "lab running")
        assert [i.lab_id for i in runtime.list()] == [sid]
        # A crash: the orchestrator is killed and comes back by itself.
        victim = pids_of(f"forge serve orchestrator .*--port {ports['orchestrator']}")
        assert len(victim) == 1
        os.kill(victim[0], signal.SIGKILL)
        # forge up holds the listening socket: a request made while no orchestrator runs
        # waits in the backlog and is answered by the next one instead of being refused.
        health = httpx.get(f"{urls['orchestrator']}/healthz", timeout=60)
        assert health.status_code == 200 and health.json()["pid"] not in victim
        wait_for(lambda: pids_of(f"forge serve orchestrator .*--port {ports['orchestrator']}")
                 not in ([], victim), 30, "orchestrator restarted")
        wait_for(lambda: ready(urls["orchestrator"]), 60, "orchestrator ready again")
        # No terminal here (a log file, systemd): each readiness change once up is a line
        # (crash drill CK: a hung or crashed service left the output silent).
        wait_for(lambda: any("orchestrator: ready again" in line for line in lines), 30,
                 "the readiness change reported")
        children = pids_of(f"forge serve .*--port ({'|'.join(map(str, ports.values()))})")
        assert len(children) == 3
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 0, err[-2000:]
    assert "exited with code" in err and "restarting" in err
    assert "orchestrator: not ready: " in err
    assert "destroyed 1 lab(s)" in err
    # What an operator reads has no noise: asyncio's warning on each TLS connection the
    # server closes (nats-py's eof_received), no blank lines of a progress display that
    # had no terminal to draw on (audit CG).
    assert "eof_received" not in err
    assert "\n\n" not in err.split("Forge is up")[0], err[:2000]
    assert pids_of(f"forge serve .*--port ({'|'.join(map(str, ports.values()))})") == []
    assert not any(bound(p) for p in ports.values())
    assert pids_of(f"nats-server.*{storage}") == []
    assert LocalRuntime(str(storage / "runtime"), prefix).list() == []


# ------------------------------------------------------------------ the supervisor itself
class Up:
    """One `forge up` subprocess with its stderr collected line by line."""

    def __init__(self, storage: Path, env_file: Path, ports: dict[str, int],
                 nats_port: int | None = None, extra: tuple[str, ...] = (),
                 env_extra: dict[str, str] | None = None) -> None:
        self.storage, self.ports = storage, ports
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        argv = [sys.executable, "-m", "forge", "up", "--storage", str(storage), "--env-file",
                str(env_file), "--spawn-port", str(ports["spawn"]), "--orchestrator-port",
                str(ports["orchestrator"]), "--scoreboard-port", str(ports["scoreboard"])]
        if nats_port is not None:
            argv += ["--nats-port", str(nats_port)]
        argv += extra
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
        env["COLUMNS"] = "400"  # one report per line
        env.update(env_extra or {})
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        stream = self.proc.stderr
        assert stream is not None
        self.reader = threading.Thread(target=lambda: self.lines.extend(
            iter(stream.readline, "")), daemon=True)
        self.reader.start()

    @property
    def err(self) -> str:
        return "".join(self.lines)

    def wait_up(self) -> None:
        wait_for(lambda: "Forge is up" in self.err or self.proc.poll() is not None, 90,
                 "'Forge is up'")
        assert "Forge is up" in self.err, self.err[-2000:]

    def service_pids(self) -> list[int]:
        return pids_of(f"forge serve .*--port ({'|'.join(map(str, self.ports.values()))})$")

    def nats_pids(self) -> list[int]:
        return pids_of(f"nats-server -c {self.storage}/")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)
        self.reader.join(timeout=10)


def make_env_file(tmp_path: Path) -> Path:
    env_file = tmp_path / "forge.env"
    env_file.write_text(f"FORGE_TEMPLATE_DIR={TEMPLATE_FIXTURES}\n"
                        f"FORGE_RUNTIME_PREFIX=s{secrets.token_hex(2)}\n")
    return env_file


def some_ports(*avoid: int) -> dict[str, int]:
    """Ports for the three services, distinct from each other and from ``avoid``."""
    return dict(zip(("spawn", "orchestrator", "scoreboard"), distinct_ports(3, *avoid),
                    strict=True))


@pytest.fixture(scope="module")
def running_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Up, int]]:
    """One `forge up` on fixed ports (NATS included), shared by the tests that keep it up."""
    tmp = tmp_path_factory.mktemp("up")
    nats_port = free_port()
    up = Up(tmp / "storage", make_env_file(tmp), some_ports(nats_port), nats_port)
    try:
        up.wait_up()
        yield up, nats_port
    finally:
        up.stop()
    assert up.proc.returncode == 0, up.err[-2000:]
    assert up.service_pids() == [] and up.nats_pids() == []


def test_second_up_on_the_same_storage_is_refused_naming_the_first(
        running_up: tuple[Up, int], tmp_path: Path) -> None:
    first, _ = running_up
    nats_before = first.nats_pids()
    assert len(nats_before) == 1
    second_ports = some_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
    second = subprocess.run(
        [sys.executable, "-m", "forge", "up", "--storage", str(first.storage), "--env-file",
         str(make_env_file(tmp_path)), "--spawn-port", str(second_ports["spawn"]),
         "--orchestrator-port", str(second_ports["orchestrator"]), "--scoreboard-port",
         str(second_ports["scoreboard"])],
        env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 1, second.stderr[-2000:]
    assert (f"another forge up (pid {first.proc.pid}) holds {first.storage}; stop it first "
            f"(Ctrl-C where it runs, or kill -INT {first.proc.pid}), or give this one another "
            "--storage") in second.stderr
    assert "Forge is up" not in second.stderr
    # Refused before anything slow: no image was checked or built first.
    assert "images" not in second.stdout + second.stderr
    # The second started nothing: no service on its ports, no second nats-server on the store.
    assert pids_of(f"forge serve .*--port ({'|'.join(map(str, second_ports.values()))})$") \
        == []
    assert not any(bound(p) for p in second_ports.values())
    assert first.nats_pids() == nats_before
    # …and the first keeps working.
    assert first.proc.poll() is None
    assert all(ready(u) for u in first.urls.values())


def test_an_operator_command_finds_the_nats_of_the_running_up(running_up: tuple[Up, int],
                                                               tmp_path: Path) -> None:
    """`forge up`'s NATS listens on a port of its own, not the default 4222: a command on
    the same storage root without NATS_URL reaches it (the runbook's "reprocess failed
    completion events" with `forge completions reprocess`)."""
    up, _ = running_up
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
    env.update(FORGE_TEMPLATE_DIR=str(TEMPLATE_FIXTURES), FORGE_ARTIFACT_STORE="jetstream")
    missing = "scn-" + "0" * 16
    out = subprocess.run([sys.executable, "-m", "forge", "--storage", str(up.storage),
                          "artifacts", "fetch", missing, "--out", str(tmp_path / "r")],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    # It asked the bus, which answered: no such results (not "NATS is not reachable").
    assert out.returncode == 1
    assert f"no results for {missing} in the jetstream artifact store" in out.stderr, out.stderr


def test_an_operator_command_calls_the_services_of_the_running_up(
        running_up: tuple[Up, int], tmp_path: Path) -> None:
    """The runbook's "restart NATS subscriber" on a `forge up` given its own ports: without
    SPAWN_URL/ORCHESTRATOR_URL/SCOREBOARD_URL it called 8082/8083/8086, sending the
    operator token to whatever listened there, and reached none of this root's services."""
    up, _ = running_up
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORGE_", "NATS_")) and not k.endswith("_URL")}
    out = subprocess.run([sys.executable, "-m", "forge", "--storage", str(up.storage),
                          "nats", "restart-subscriber"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in ("orchestrator", "scoreboard", "spawn"):
        assert f"{name}: " in out.stdout, out.stdout


def test_the_service_logs_and_the_bus_key_are_the_operators_alone(
        running_up: tuple[Up, int]) -> None:
    """The services' logs name learners, tenants and scenarios, and the bus's TLS key
    proves the bus to its clients: no other local user reads either (they were 0644 in a
    0755 directory)."""
    up, _ = running_up
    logs = up.storage / "logs"
    assert logs.stat().st_mode & 0o777 == 0o700
    made = sorted(p.name for p in logs.iterdir())
    assert {"spawn.log", "orchestrator.log", "scoreboard.log"} <= set(made), made
    for path in logs.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    tls = up.storage / "nats-tls"
    assert tls.stat().st_mode & 0o777 == 0o700
    assert (tls / "server-key.pem").stat().st_mode & 0o777 == 0o600


def test_killed_nats_is_restarted_on_its_port_and_reported(running_up: tuple[Up, int]) -> None:
    up, nats_port = running_up
    [victim] = up.nats_pids()
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "nats-server exited with code -9; restarting" in up.err, 30,
             "the death reported")
    wait_for(lambda: f"nats-server restarted on port {nats_port}" in up.err, 60,
             "the restart reported")
    [again] = up.nats_pids()
    assert again != victim and alive(again)
    assert bound(nats_port)
    # Every service reconnects to the restarted bus and is ready again.
    wait_for(lambda: all(ready(u) for u in up.urls.values()), 90, "platform ready again")
    assert up.proc.poll() is None


def test_kill_9_of_up_leaves_no_child(tmp_path: Path) -> None:
    up = Up(tmp_path / "storage", make_env_file(tmp_path), some_ports())
    try:
        up.wait_up()
        children = up.service_pids() + up.nats_pids()
        assert len(children) == 4
        os.kill(up.proc.pid, signal.SIGKILL)
        up.proc.wait(timeout=10)
        wait_for(lambda: not any(alive(pid) for pid in children), 5, "children gone")
        wait_for(lambda: not any(bound(p) for p in up.ports.values()), 5, "ports released")
    finally:
        up.stop()
        # The monitoring guard's nftables table outlives a kill -9 (the next `forge up` on
        # this root replaces it); the test's root is gone, so remove it here.
        subprocess.run(["nft", "delete", "table", "ip", table_name(tmp_path / "storage")],
                       capture_output=True, check=False, timeout=30)


@pytest.mark.parametrize("taken", ["orchestrator", "nats"])
def test_a_taken_port_is_refused_by_name_and_nothing_starts(tmp_path: Path,
                                                            taken: str) -> None:
    ports = some_ports()
    nats_port = distinct_ports(1, *ports.values())[0]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", nats_port if taken == "nats" else ports[taken]))
        squatter.listen()
        up = Up(tmp_path / "storage", make_env_file(tmp_path), ports, nats_port)
        up.proc.wait(timeout=120)
        up.stop()
        port = nats_port if taken == "nats" else ports[taken]
        assert up.proc.returncode == 1, up.err[-2000:]
        label = "NATS" if taken == "nats" else taken
        assert f"forge up: {label}: cannot listen on 127.0.0.1:{port}: already in use" in up.err
        assert "Forge is up" not in up.err
        assert up.service_pids() == [] and up.nats_pids() == []
        assert not any(bound(p) for name, p in ports.items() if name != taken)
        # Refused, it left nothing: the storage root it had made (with dev secrets, a
        # signing key, a database) stayed behind before.
        assert not (tmp_path / "storage").exists()
        assert f"removed the storage root it had created: {tmp_path / 'storage'}" in up.err


def test_serve_refuses_a_taken_port_by_name_before_anything_starts(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
    env.update(STORAGE_ROOT=str(storage), FORGE_TEMPLATE_DIR=str(TEMPLATE_FIXTURES))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "forge", "serve", "scoreboard", "--port",
                               str(port)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"forge serve scoreboard: cannot listen on 127.0.0.1:{port}: already in use" \
        in proc.stderr
    assert not (storage / "forge.db").exists()  # no database opened, no subscriber started


def test_a_pinned_policy_hash_that_differs_stops_up_before_anything_starts(
        tmp_path: Path) -> None:
    """spawn_service and the orchestrator refuse to start when OPA_POLICY_HASH differs from
    the policies' hash. `forge up` started NATS and the services anyway and restarted the
    two in a loop until --ready-timeout (2 minutes by default), then stopped with only
    "not running (restart #4 …)". It now names the variable at once and starts nothing,
    as `forge config check` does. So does a template every service refuses to load: a
    subnet wider than /24, which an earlier release accepted, crash-looped all three."""
    env_file = make_env_file(tmp_path)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "netplus.yaml").write_text((content_path("templates") / "netplus.yaml")
                                            .read_text().replace("10.61.1.0/24", "10.61.0.0/23"))
    with env_file.open("a") as fh:
        fh.write("OPA_POLICY_HASH=" + "0" * 64 + f"\nFORGE_TEMPLATE_DIR={templates}\n")
    storage = tmp_path / "storage"
    up = Up(storage, env_file, some_ports(), extra=("--ready-timeout", "20"))
    try:
        up.proc.wait(timeout=120)
    finally:
        up.stop()
    assert up.proc.returncode == 1, up.err[-2000:]
    assert "policy bundle hash mismatch: OPA_POLICY_HASH expects " + "0" * 64 in up.err
    assert f"FORGE_TEMPLATE_DIR: {templates}: invalid template" in up.err
    assert 'netplus.yaml: spec.network.subnets[0].cidr: prefix length must be between /24' \
        in up.err
    assert "exited with code" not in up.err and "Forge is up" not in up.err
    assert up.service_pids() == [] and up.nats_pids() == []
    assert not storage.exists()  # refused: the storage root it made is gone again


def test_services_not_ready_in_time_are_named_with_their_failed_checks(
        tmp_path: Path) -> None:
    """Audit AS: a check red at start (here OPA unreachable) stopped everything after the
    ready timeout with only "services did not become ready; see the logs". Now each
    service that was not ready is named with its failed checks."""
    env_file = make_env_file(tmp_path)
    with env_file.open("a") as fh:
        fh.write(f"OPA_URL=http://127.0.0.1:{free_port()}\n")  # nothing listens there
    up = Up(tmp_path / "storage", env_file, some_ports(), extra=("--ready-timeout", "8"))
    try:
        up.proc.wait(timeout=120)
    finally:
        up.stop()
    assert up.proc.returncode == 1, up.err[-2000:]
    assert "did not become ready within 8 s (--ready-timeout)" in up.err
    assert "orchestrator: failed checks: policy (" in up.err, up.err[-2000:]
    assert "Forge is up" not in up.err
    assert up.service_pids() == [] and up.nats_pids() == []
