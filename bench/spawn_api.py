"""POST /v1/spawn throughput and latency: a real `forge serve spawn` on loopback, real NATS, SQLite.

Prints accepted spawns/s and p50/p99 latency (median over runs). Targets (issue 3):
≥ 300 spawns/s and p99 ≤ 100 ms on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from forge.bus import NatsServer
from forge.bus.server import free_port

ROOT = Path(__file__).resolve().parents[1]
PLANS = """
plans:
  BENCH:
    tracks: [netplus]
    tiers: [foundation]
    spawns_per_minute: 100000
    tenant_spawns_per_minute: 1000000
    concurrent: 10000
    tenant_concurrent: 1000000
    max_lab_minutes: 30
    retention_days: 7
"""
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
PER_RUN = int(os.environ.get("BENCH_PER_RUN", "1500"))
RUNS = 3


def learner_keys(storage: str) -> list[dict[str, str]]:
    """One API key per client (learner-N of tenant-N%4), entitled to the BENCH plan."""
    from forge.entitlements.grants import grant
    from forge.identity.apikeys import create_api_key
    from forge.store.db import Database

    db = Database(f"sqlite:///{storage}/forge.db")
    keys = []
    for wid in range(CLIENTS):
        tenant, subject = f"tenant-{wid % 4}", f"learner-{wid}"
        grant(db, tenant, "BENCH", subject)
        keys.append({"x-api-key": create_api_key(db, tenant, subject).plaintext})
    db.engine.dispose()
    return keys


async def drive(url: str, run: int, keys: list[dict[str, str]]) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    accepted = 0
    counter = iter(range(PER_RUN))

    async def worker(wid: int) -> None:
        nonlocal accepted
        headers = keys[wid]
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for i in counter:
                started = time.perf_counter()
                resp = await client.post("/v1/spawn", headers=headers,
                                         json={"track": "netplus", "request_id": f"b{run}-{i:08d}"})
                latencies.append(time.perf_counter() - started)
                accepted += resp.status_code == 201

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CLIENTS)))
    return time.perf_counter() - started, latencies, accepted


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, NatsServer() as nats:
        plans = Path(tmp) / "plans.yaml"
        plans.write_text(PLANS)
        port = free_port()
        env = {**os.environ, "FORGE_ENV": "dev", "STORAGE_ROOT": tmp, **nats.client_env(),
               "DEV_ALLOW_XPLAN": "true", "FORGE_PLANS_FILE": str(plans),
               "FORGE_TEMPLATE_DIR": str(ROOT / "tests" / "fixtures" / "templates")}
        proc = subprocess.Popen([sys.executable, "-m", "forge", "serve", "spawn", "--port",
                                 str(port)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            keys = learner_keys(tmp)
            rates, p50s, p99s = [], [], []
            for run in range(RUNS):
                elapsed, lat, accepted = asyncio.run(drive(url, run, keys))
                lat.sort()
                rates.append(accepted / elapsed)
                p50s.append(lat[len(lat) // 2] * 1000)
                p99s.append(lat[int(len(lat) * 0.99)] * 1000)
                print(f"run {run + 1}: {accepted}/{PER_RUN} accepted, {accepted / elapsed:,.0f}/s, "
                      f"p50 {p50s[-1]:.1f} ms, p99 {p99s[-1]:.1f} ms")
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    rate, p50, p99 = statistics.median(rates), statistics.median(p50s), statistics.median(p99s)
    print(f"spawn API ({CLIENTS} concurrent clients, SQLite, real NATS): "
          f"{rate:,.0f} accepted spawns/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms (medians of {RUNS})")
    print(f"vs targets: rate {rate / 300:.2f}x of 300/s, p99 {100 / p99:.2f}x headroom on 100 ms")


if __name__ == "__main__":
    main()
