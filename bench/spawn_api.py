"""POST /v1/spawn: throughput, latency at 200/s and server CPU per request (issue 19 item 5).

A real `forge serve spawn` (FORGE_SPAWN_WORKERS worker processes, default 2) on loopback,
real NATS, SQLite; the bench client on the same machine (a small keep-alive HTTP/1.1 client,
`_http.py`, so the client does not eat the cores it measures). Distinct learners (API keys
entitled to a bench plan whose limits stay out of the way).

* saturation: CLIENTS connections send spawns back to back for BENCH_SECONDS; accepted/s,
  and the service's CPU (utime+stime of the parent and every worker, from /proc) divided by
  the requests it answered: CPU per request, which other work on the machine barely moves;
* paced: 200 spawns/s on a fixed schedule (open loop: latency counts from the moment a
  request was due, so a slow answer delays no later measurement) for BENCH_SECONDS; p99.

Medians of RUNS runs are printed and recorded: spawn_api_rps, spawn_api_p99_ms,
spawn_api_cpu_ms. Targets: ≥ 500 accepted/s, p99 ≤ 50 ms at 200/s.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _http import BenchConnection
from _report import record

from forge.bus import NatsServer
from forge.bus.ports import free_port

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
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
WORKERS = os.environ.get("BENCH_SPAWN_WORKERS", "2")
PACED_RATE = 200.0
TICKS = os.sysconf("SC_CLK_TCK")


def learner_keys(storage: str, count: int = CLIENTS) -> list[dict[str, str]]:
    """One API key per learner (learner-N of tenant-N), entitled to the BENCH plan."""
    from forge.entitlements.grants import grant
    from forge.identity.apikeys import create_api_key
    from forge.store.db import Database

    db = Database(f"sqlite:///{storage}/forge.db")
    keys = []
    for wid in range(count):
        tenant, subject = f"tenant-{wid}", f"learner-{wid}"
        grant(db, tenant, "BENCH", subject)
        keys.append({"x-api-key": create_api_key(db, tenant, subject).plaintext})
    db.dispose()
    return keys


def labs_end(storage: str) -> None:
    """Every bench lab ends (its quota slot is released), as a class's labs do between
    runs: a limit check counts the live slots of the tenant, and thousands of never-ending
    bench labs would measure that count instead of the API."""
    from sqlalchemy import update

    from forge.store.db import Database
    from forge.store.models import QuotaSlot

    db = Database(f"sqlite:///{storage}/forge.db")
    try:
        with db.session() as sess:
            sess.execute(update(QuotaSlot).where(QuotaSlot.released_at.is_(None))
                         .values(released_at=datetime.now(UTC)))
    finally:
        db.dispose()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (utime+stime) of `pid` and every descendant alive now."""
    total, todo = 0.0, [pid]
    while todo:
        one = todo.pop()
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
            for task in Path(f"/proc/{one}/task").glob("*"):
                todo += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


async def _spawn(conn: BenchConnection, headers: dict[str, str]) -> int:
    """The status of one spawn; 0 when the connection dropped (counted as not accepted,
    and the connection is opened again for the next request)."""
    try:
        status, _ = await conn.request("POST", "/v1/spawn", headers, {"track": "netplus"})
    except (ConnectionError, asyncio.IncompleteReadError):
        conn.close()
        return 0
    return status


async def saturate(port: int, keys: list[dict[str, str]]) -> tuple[int, int, float]:
    """(requests, accepted, seconds) of CLIENTS connections sending back to back."""
    sent = accepted = 0
    stop = time.perf_counter() + SECONDS

    async def client(wid: int) -> None:
        nonlocal sent, accepted
        conn = BenchConnection("127.0.0.1", port)
        while time.perf_counter() < stop:
            status = await _spawn(conn, keys[wid])
            sent += 1
            accepted += status == 201
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(CLIENTS)))
    return sent, accepted, time.perf_counter() - started


async def paced(port: int, keys: list[dict[str, str]]) -> tuple[list[float], int]:
    """Latencies (s, from when each request was due) at PACED_RATE/s, and how many failed."""
    idle: list[BenchConnection] = []
    latencies: list[float] = []
    failed = 0
    started = time.perf_counter()
    count = int(PACED_RATE * SECONDS)

    async def one(i: int, due: float) -> None:
        nonlocal failed
        conn = idle.pop() if idle else BenchConnection("127.0.0.1", port)
        status = await _spawn(conn, keys[i % len(keys)])
        latencies.append(time.perf_counter() - due)
        failed += status != 201
        idle.append(conn)

    tasks = []
    for i in range(count):
        due = started + i / PACED_RATE
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return latencies, failed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, NatsServer() as nats:
        plans = Path(tmp) / "plans.yaml"
        plans.write_text(PLANS)
        port, nobody = free_port(), free_port()
        # The peers it would ask (readiness, a spawn's placement) at a port nothing listens
        # on, never the default ones: another Forge running there answered its readiness
        # probe with 401 and this bench's service never became ready.
        env = {**os.environ, "FORGE_ENV": "dev", "STORAGE_ROOT": tmp, **nats.client_env(),
               "ORCHESTRATOR_URL": f"http://127.0.0.1:{nobody}",
               "SCOREBOARD_URL": f"http://127.0.0.1:{nobody}",
               "FORGE_PLANS_FILE": str(plans), "FORGE_SPAWN_WORKERS": WORKERS,
               "FORGE_TEMPLATE_DIR": str(ROOT / "tests" / "fixtures" / "templates")}
        log = Path(tmp) / "spawn.log"  # the service's own log, shown if a run fails
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "forge", "serve", "spawn",
                                     "--port", str(port)], env=env, stdout=out, stderr=out)
        rates, cpus, p99s = [], [], []
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:  # a figure of 0/s measured nothing: say why instead (its log follows)
                raise RuntimeError(f"spawn_service was not ready within 30 s (exit code "
                                   f"{proc.poll()})")
            keys = learner_keys(tmp)
            for run in range(RUNS):
                cpu = tree_cpu_s(proc.pid)
                sent, accepted, elapsed = asyncio.run(saturate(port, keys))
                if accepted == 0:
                    raise RuntimeError(f"no spawn of {sent} accepted (exit code {proc.poll()})")
                cpu_ms = (tree_cpu_s(proc.pid) - cpu) / max(sent, 1) * 1000
                labs_end(tmp)
                lat, failed = asyncio.run(paced(port, keys))
                labs_end(tmp)
                lat.sort()
                p99 = lat[int(len(lat) * 0.99)] * 1000
                rates.append(accepted / elapsed)
                cpus.append(cpu_ms)
                p99s.append(p99)
                print(f"run {run + 1}: {accepted}/{sent} accepted in {elapsed:.1f}s = "
                      f"{accepted / elapsed:,.0f}/s, server CPU {cpu_ms:.2f} ms/request; "
                      f"at {PACED_RATE:.0f}/s: p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
                      f"p99 {p99:.1f} ms, {failed} not accepted")
        except BaseException:
            lines = [line for line in log.read_text("utf-8", "replace").splitlines()
                     if '"forge.access"' not in line]  # what it said besides its requests
            print("spawn_service log:\n" + "\n".join(lines[-40:]), file=sys.stderr)
            raise
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    rate, cpu_ms, p99 = statistics.median(rates), statistics.median(cpus), statistics.median(p99s)
    how = f"{WORKERS} worker(s), SQLite, real NATS, {CLIENTS} clients, medians of {RUNS}"
    print(f"spawn API ({how}): {rate:,.0f} accepted/s, {cpu_ms:.2f} ms server CPU per "
          f"request, p99 {p99:.1f} ms at {PACED_RATE:.0f}/s")
    record("spawn_api_rps", round(rate, 1), cpu_ms_per_op=round(cpu_ms, 3), detail=how)
    record("spawn_api_p99_ms", round(p99, 1), detail=f"open loop at {PACED_RATE:.0f}/s, {how}")
    record("spawn_api_cpu_ms", round(cpu_ms, 3), cpu_ms_per_op=round(cpu_ms, 3), detail=how)


if __name__ == "__main__":
    main()
