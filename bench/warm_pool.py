"""Warm lab pools (issue 19 item 1 and item 3's second half), needs root.

1. In-process, the local runtime alone: `create` of a netplus lab (3 hosts, 2 subnets, the
   tests' `lab-netplus` template with its variables) fresh, and claimed from a warm pool
   (rename + personalise: seeds, environment, the target's service). Prints p50/p99 and the
   calling thread's CPU per claim; the chall-manager anchor claims in 640 µs without any
   personalisation.
2. The whole platform (`forge up`'s supervisor: real NATS, SQLite, spawn_service and one
   orchestrator with FORGE_WARM_POOL=lab-netplus=50):
   - `pool_running_p50_ms`: sequential spawns served by the pool, server side from the
     orchestrator's `launching` to `running` (claim + personalise + state change; the
     policy decision and SAT consumption come before `launching`), from the store's
     transition times; spawn → running (row created → running) is printed beside it.
   - `spawn200_p99_s`: 200 distinct learners POST /v1/spawn at the same moment (one
     connection each) with the pool full (50 ready); p99 over all 200 (150 are built
     fresh) of the time from the moment the requests were sent to running, as a learner
     waits it (row created → running, which leaves out the wait for the API, is printed
     beside it). Meanwhile each learner's status is asked every 1.5 s, as its lab page
     asks (lab.js); the running times are the store's, not the polls'.

    .venv/bin/python bench/warm_pool.py    # BENCH_POOL_K=200 BENCH_POOL_SIZE=50
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _report import record
from scale_out import burst, learner_keys, wait_running

from forge.bus.ports import free_port
from forge.cli.up import teardown_labs
from forge.config.settings import load_settings
from forge.services.common.bus import bus_auth
from forge.stack.supervisor import Supervisor
from forge.stack.topology import Topology, plan
from runtime import machine_busy_s

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "lab-netplus"
K = int(os.environ.get("BENCH_POOL_K", "200"))
POOL = int(os.environ.get("BENCH_POOL_SIZE", "50"))
SEQUENTIAL = int(os.environ.get("BENCH_POOL_SEQUENTIAL", "20"))
IN_PROCESS = int(os.environ.get("BENCH_POOL_IN_PROCESS", "20"))
BROWSER_POLL_S = 1.5  # how often a learner's lab page asks for its lab's status (lab.js)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def in_process() -> tuple[list[float], list[float], float]:
    """(fresh create ms, pooled create ms, calling-thread CPU ms per pooled create)."""
    from forge.runtime.local import build
    from forge.services.orchestrator.labspec import lab_spec
    from forge.templates.registry import TemplateRegistry
    from forge.templates.variables import generate_values, render

    template = TemplateRegistry.load(ROOT / "tests" / "fixtures" / "templates").get(
        TEMPLATE).template

    def spec(i: int) -> object:
        return lab_spec(f"scn-{i:016x}", render(template, generate_values(template)))

    state = tempfile.mkdtemp(prefix="forge-pool-bench-")
    # The engine exactly as the orchestrator builds it (images resolved from settings).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
    rt = build(load_settings({**env, "FORGE_ENV": "dev", "STORAGE_ROOT": state,
                              "FORGE_RUNTIME_PREFIX": "bp" + secrets.token_hex(1)}))
    fresh: list[float] = []
    pooled: list[float] = []
    cpu: list[float] = []
    try:
        for i in range(IN_PROCESS // 2):
            one = spec(i)
            started = time.perf_counter()
            rt.create(one)  # type: ignore[arg-type]
            fresh.append((time.perf_counter() - started) * 1000)
            rt.destroy(one.lab_id)  # type: ignore[attr-defined]
        size = 10
        rt.warm({TEMPLATE: (spec(0), size)}, quiet_s=0.05)  # type: ignore[dict-item]
        n = 1000
        while len(pooled) < IN_PROCESS:
            assert rt.warm_pool is not None
            while rt.warm_pool.status()[TEMPLATE]["ready"] < size:
                time.sleep(0.05)
            for _ in range(size):
                one = spec(n)
                n += 1
                claimed = rt.warm_pool.stats.claimed
                started, cpu0 = time.perf_counter(), time.thread_time()
                rt.create(one)  # type: ignore[arg-type]
                elapsed = (time.perf_counter() - started) * 1000
                if rt.warm_pool.stats.claimed > claimed:
                    pooled.append(elapsed)
                    cpu.append((time.thread_time() - cpu0) * 1000)
            for info in rt.list():
                if not info.lab_id.startswith("wp-"):
                    rt.destroy(info.lab_id)
    finally:
        rt.warm({})
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()
        shutil.rmtree(state, ignore_errors=True)
    return fresh, pooled, statistics.median(cpu)


def pool_ready(settings_env: dict[str, str], topology: Topology) -> int:
    from forge.runtime.factory import make_runtime

    node = topology.nodes[0]
    rt = make_runtime(load_settings({**settings_env, **node.environ("127.0.0.1", 0)}))
    try:
        return sum(1 for i in rt.list() if i.lab_id.startswith("wp-") and i.state == "running")
    finally:
        rt.close()


def transitions(storage: Path, ids: list[str]) -> dict[str, dict[str, datetime]]:
    """scenario id -> {state: when it was entered} (plus ``created``) from the store."""
    from sqlalchemy import select

    from forge.store.db import Database
    from forge.store.models import Scenario, ScenarioTransition

    db = Database(f"sqlite:///{storage}/forge.db")
    out: dict[str, dict[str, datetime]] = {sid: {} for sid in ids}
    try:
        with db.read() as sess:
            for sid, created in sess.execute(select(Scenario.scenario_id, Scenario.created_at)
                                             .where(Scenario.scenario_id.in_(ids))):
                out[sid]["created"] = created
            for sid, to, at in sess.execute(
                    select(ScenarioTransition.scenario_id, ScenarioTransition.to_state,
                           ScenarioTransition.at).where(ScenarioTransition.scenario_id.in_(ids))):
                out[sid].setdefault(to, at)
    finally:
        db.engine.dispose()
    return out


def wait_pool(env: dict[str, str], topology: Topology, want: int, timeout_s: float) -> int:
    end = time.monotonic() + timeout_s
    ready = pool_ready(env, topology)
    while ready < want and time.monotonic() < end:
        time.sleep(0.5)
        ready = pool_ready(env, topology)
    return ready


def platform() -> tuple[list[float], list[float], list[float], int, float]:
    """(pooled launching→running ms, pooled created→running ms, burst sent→running s,
    labs running after the burst, machine CPU ms per burst spawn)."""
    with tempfile.TemporaryDirectory(prefix="forge-pool-") as tmp:
        storage = Path(tmp)
        templates = storage / "templates"
        templates.mkdir()
        shutil.copy(ROOT / "tests" / "fixtures" / "templates" / f"{TEMPLATE}.yaml", templates)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
        env.update(FORGE_ENV="dev", STORAGE_ROOT=tmp, DEV_ALLOW_XPLAN="true",
                   FORGE_RUNTIME_PREFIX="b" + secrets.token_hex(2),
                   FORGE_TEMPLATE_DIR=str(templates), FORGE_WARM_POOL=f"{TEMPLATE}={POOL}",
                   FORGE_NODE_CAPACITY_LABS="2000", FORGE_NODE_CAPACITY_MEMORY_MB="1000000")
        settings = load_settings(env)
        ports = {"spawn": free_port(), "orchestrator": free_port(), "scoreboard": free_port()}
        topology = plan(storage, ports, base_prefix=settings.runtime_prefix, nodes=1)
        sup = Supervisor(env, storage, ports=ports, bus_auth=bus_auth(settings),
                         topology=topology, report=lambda m: print(f"  [{m}]"))
        try:
            sup.start()
            if not sup.wait_ready(120):
                raise SystemExit(f"platform not ready; logs in {tmp}/logs")
            url = sup.url("spawn")
            print(f"  pool filled: {wait_pool(env, topology, POOL, 300)}/{POOL} ready")
            seq_ids = []
            for i, headers in enumerate(learner_keys(storage, SEQUENTIAL, "seq")):
                _s, accepted = asyncio.run(burst(url, [headers]))
                wait_running(url, accepted)
                seq_ids += [sid for sid, _h in accepted]
                if i % 10 == 9:
                    print(f"  {i + 1} sequential spawns running")
            times = transitions(storage, seq_ids)
            launch = [(t["running"] - t["launching"]).total_seconds() * 1000
                      for t in times.values() if "running" in t]
            whole = [(t["running"] - t["created"]).total_seconds() * 1000
                     for t in times.values() if "running" in t]
            print(f"  pool refilled: {wait_pool(env, topology, POOL, 300)}/{POOL} ready")
            keys = learner_keys(storage, K, "burst")
            sent = datetime.now(UTC).replace(tzinfo=None)  # the store's times are naive UTC
            busy = machine_busy_s()
            accept_s, scenarios = asyncio.run(burst(url, keys))
            # Each learner's page asks every 1.5 s (lab.js); running is read from the store.
            running = wait_running(url, scenarios, every_s=BROWSER_POLL_S)
            cpu_ms = (machine_busy_s() - busy) * 1000 / max(1, len(scenarios))
            print(f"  burst: {len(scenarios)}/{K} accepted in {accept_s:.2f}s, "
                  f"{running} running")
            times = transitions(storage, [sid for sid, _h in scenarios])
            spans = [(t["running"] - sent).total_seconds()
                     for t in times.values() if "running" in t]
            rows = [(t["running"] - t["created"]).total_seconds()
                    for t in times.values() if "running" in t]
            print(f"  burst: row created → running p50 {pct(rows, 0.5):.2f} s, "
                  f"p99 {pct(rows, 0.99):.2f} s")
            quick = sorted((t["running"] - t["launching"]).total_seconds() * 1000
                           for t in times.values() if "running" in t)[:POOL]
            print(f"  burst: {sum(s <= 1.0 for s in spans)} running within 1 s of their "
                  f"request; the {len(quick)} quickest launching → running p50 "
                  f"{pct(quick, 0.5):.0f} ms, max {max(quick, default=0):.0f} ms")
            return launch, whole, spans, running, cpu_ms
        finally:
            sup.stop()
            print(f"  stopped, destroyed {teardown_labs(settings, topology, env)} lab(s)")


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench/warm_pool.py needs root (the local runtime builds labs)")
    fresh, pooled, claim_cpu = in_process()
    print(f"runtime create of a netplus lab: fresh p50 {pct(fresh, 0.5):.1f} ms, "
          f"from a warm pool p50 {pct(pooled, 0.5):.2f} ms p99 {pct(pooled, 0.99):.2f} ms "
          f"({claim_cpu:.2f} ms CPU in the calling thread; chall-manager 0.64 ms, "
          "without personalisation)")
    launch, whole, spans, running, burst_cpu = platform()
    p50 = statistics.median(launch)
    print(f"platform, pooled spawn: launching → running p50 {p50:.1f} ms, "
          f"row created → running p50 {statistics.median(whole):.1f} ms ({len(launch)} spawns)")
    p99 = pct(spans, 0.99)
    print(f"platform, {K} concurrent spawns (pool {POOL}): sent → running p50 "
          f"{pct(spans, 0.5):.2f} s, p99 {p99:.2f} s, {running}/{K} running")
    record("pool_running_p50_ms", round(p50, 2), cpu_ms_per_op=round(claim_cpu, 2),
           detail=f"launching→running, {len(launch)} sequential pooled spawns; runtime claim "
                  f"p50 {pct(pooled, 0.5):.2f} ms vs fresh {pct(fresh, 0.5):.0f} ms")
    record("spawn200_p99_s", round(p99, 2), cpu_ms_per_op=round(burst_cpu, 1),
           detail=f"{K} learners at once, pool {POOL}; p50 {pct(spans, 0.5):.2f} s; "
                  f"{running}/{K} running; CPU: the machine's (/proc/stat) from the send "
                  "until all ran, per spawn, the bench's client and status polls (each "
                  "learner every 1.5 s, as its lab page) included")


if __name__ == "__main__":
    main()
