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
from pathlib import Path

import httpx

from forge.runtime.local import LocalRuntime

from ..conftest import TEMPLATE_FIXTURES
from ..live_server import free_port


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
    ports = {"spawn": free_port(), "orchestrator": free_port(), "scoreboard": free_port()}
    prefix = "u" + secrets.token_hex(2)
    storage = tmp_path / "storage"
    env_file = tmp_path / "forge.env"
    env_file.write_text(f"# test env\nFORGE_TEMPLATE_DIR={TEMPLATE_FIXTURES}\n"
                        f"export FORGE_RUNTIME_PREFIX='{prefix}'\nDEV_ALLOW_XPLAN=true\n")
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
        wait_for(lambda: pids_of(f"forge serve orchestrator .*--port {ports['orchestrator']}")
                 not in ([], victim), 30, "orchestrator restarted")
        wait_for(lambda: ready(urls["orchestrator"]), 60, "orchestrator ready again")
        children = pids_of(f"forge serve .*--port ({'|'.join(map(str, ports.values()))})")
        assert len(children) == 3
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 0, err[-2000:]
    assert "exited with code" in err and "restarting" in err
    assert "destroyed 1 lab(s)" in err
    assert pids_of(f"forge serve .*--port ({'|'.join(map(str, ports.values()))})") == []
    assert not any(bound(p) for p in ports.values())
    assert pids_of(f"nats-server.*{storage}") == []
    assert LocalRuntime(str(storage / "runtime"), prefix).list() == []
