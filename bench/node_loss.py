"""How long a lost lab node's labs take to fail and free their slots, with the default
FORGE_NODE_HEARTBEAT_S / FORGE_NODE_GRACE_S.

Real `forge serve` processes on loopback (spawn_service, lab nodes n1 and n2), real NATS,
SQLite, the local runtime (root). A lab is placed on n1, n1 is killed with SIGKILL, and
the time from n1's last heartbeat (its KV record) to the lab's `failed` row and to its
released quota slot is printed. Runs RUNS times; prints each run and the median.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from forge.bus import NatsServer
from forge.bus.dial import connect
from forge.bus.nodes import NodeRegistry
from forge.bus.ports import free_port
from forge.store.db import Database
from forge.store.models import QuotaSlot, Scenario

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def serve(service: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "forge", "serve", service, "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def ready(url: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never became ready")


async def last_heartbeat(nats: NatsServer, node_id: str) -> float:
    nc = await connect(nats.admin_url, "bench")
    try:
        found = await NodeRegistry(nc.jetstream, replicas=1, grace_s=15.0,
                                   manage=False).get(node_id)
    finally:
        await nc.close()
    assert found is not None
    return found[0].heartbeat_at


def one_run(run: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp, NatsServer() as nats:
        base = {**os.environ, "FORGE_ENV": "dev", "STORAGE_ROOT": tmp, **nats.client_env(),
                "DEV_ALLOW_XPLAN": "true",
                "FORGE_TEMPLATE_DIR": str(ROOT / "tests" / "fixtures" / "templates")}
        ports = {name: free_port() for name in ("spawn", "n1", "n2")}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        procs: dict[str, subprocess.Popen[bytes]] = {}

        def node(name: str) -> None:
            procs[name] = serve("orchestrator", ports[name], {
                **base, "FORGE_NODE_ID": name, "FORGE_NODE_URL": urls[name],
                "FORGE_RUNTIME_PREFIX": f"b{run}{name[-1]}"})
            ready(urls[name])

        try:
            node("n1")  # alone first, so the lab lands on it
            procs["spawn"] = serve("spawn", ports["spawn"], {**base,
                                                             "ORCHESTRATOR_URL": urls["n1"]})
            ready(urls["spawn"])
            db = Database(f"sqlite:///{tmp}/forge.db")
            from forge.entitlements.grants import grant
            from forge.identity.apikeys import create_api_key
            grant(db, "acme", "PRO", "alice")
            key = {"x-api-key": create_api_key(db, "acme", "alice").plaintext}
            resp = httpx.post(f"{urls['spawn']}/v1/spawn", headers=key,
                              json={"track": "netplus"}, timeout=30)
            assert resp.status_code == 201, resp.text
            sid = resp.json()["scenario_id"]
            while True:
                with db.read() as sess:
                    row = sess.get(Scenario, sid)
                    if row is not None and row.state == "running":
                        assert row.node_id == "n1"
                        break
                time.sleep(0.05)
            node("n2")
            procs["n1"].send_signal(signal.SIGKILL)
            procs["n1"].wait()
            beat = asyncio.run(last_heartbeat(nats, "n1"))
            failed_at = released_at = None
            while released_at is None or failed_at is None:
                now = time.time()
                with db.read() as sess:
                    row = sess.get(Scenario, sid)
                    slot = sess.scalar(select(QuotaSlot).where(QuotaSlot.scenario_id == sid))
                    if failed_at is None and row is not None and row.state == "failed":
                        failed_at = now
                        assert row.state_reason == "lab node n1 lost", row.state_reason
                    if released_at is None and slot is not None and slot.released_at:
                        released_at = now
                time.sleep(0.05)
            db.engine.dispose()
            return failed_at - beat, released_at - beat
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)
            for name in ("n1", "n2"):
                subprocess.run([sys.executable, "-m", "forge", "runtime", "destroy", "--all"],
                               env={**base, "FORGE_RUNTIME_PREFIX": f"b{run}{name[-1]}"},
                               capture_output=True, check=False, timeout=120)


def main() -> None:
    fails, frees = [], []
    for run in range(RUNS):
        failed, freed = one_run(run)
        fails.append(failed)
        frees.append(freed)
        print(f"run {run + 1}: last heartbeat -> lab failed {failed:.1f} s, slot released "
              f"{freed:.1f} s")
    print(f"node loss with the defaults (heartbeat 2 s, grace 15 s): lab failed after "
          f"{statistics.median(fails):.1f} s, slot released after "
          f"{statistics.median(frees):.1f} s (medians of {RUNS})")


if __name__ == "__main__":
    main()
