"""Scale-out on one machine: 1 lab node vs 3 (issue 15 item 7), needs root.

For each node count the whole platform is started with `forge up`'s own supervisor and
topology (real NATS, SQLite, N orchestrators with the local runtime), then K distinct
learners (API keys entitled to a bench plan) each spawn one lab at the same moment through
the spawn API. Prints, as medians over runs: accepted spawns/s, the time until every
accepted lab is running (labs/s), the platform's CPU per lab, and the 3-vs-1 ratios. With
lab nodes (issue 15 item 3: `forge nodes list` exists) it also times a node's loss: kill -9
of a node until its labs are failed; otherwise it says that it was not measured.

    .venv/bin/python bench/scale_out.py        # BENCH_SCALE_K=8 BENCH_SCALE_RUNS=3
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from forge.bus.ports import free_port
from forge.cli.up import teardown_labs
from forge.config.settings import load_settings
from forge.services.common.bus import bus_auth
from forge.stack.supervisor import Supervisor
from forge.stack.topology import Topology, plan

ROOT = Path(__file__).resolve().parents[1]
K = int(os.environ.get("BENCH_SCALE_K", "8"))
RUNS = int(os.environ.get("BENCH_SCALE_RUNS", "3"))
NODE_COUNTS = (1, 3)
PLAN = "ENTERPRISE"
RUNNING_TIMEOUT_S = 300.0


@dataclass
class Run:
    """One burst of K spawns: how fast they were accepted and became running labs."""

    accepted: int
    accept_s: float
    running: int
    running_s: float
    cpu_s: float


def stack_cpu_s(sup: Supervisor) -> float:
    """CPU seconds (user+sys, with reaped children) of every process the stack runs."""
    pids = [c.proc.pid for c in sup.children.values() if c.proc is not None]
    pids += [m.server.pid for m in sup.nats_members if m.server.pid is not None]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime
    return total


def learner_keys(storage: Path, count: int, tag: str) -> list[dict[str, str]]:
    """`count` distinct learners of 4 tenants, each with an API key and the PLAN plan (its
limits, 1000 live labs per tenant, stay out of the way)."""
    from forge.entitlements.grants import grant
    from forge.identity.apikeys import create_api_key
    from forge.store.db import Database

    db = Database(f"sqlite:///{storage}/forge.db")
    keys = []
    for i in range(count):
        tenant, subject = f"tenant-{i % 4}", f"learner-{tag}-{i}"
        grant(db, tenant, PLAN, subject)
        keys.append({"x-api-key": create_api_key(db, tenant, subject).plaintext})
    db.engine.dispose()
    return keys


Scenarios = list[tuple[str, dict[str, str]]]  # (scenario id, the learner's headers)


async def burst(url: str, keys: list[dict[str, str]]) -> tuple[float, Scenarios]:
    """Every learner spawns once, all at the same moment; (seconds, accepted scenarios).

    One connection per learner, as a class's browsers have: httpx's default pool opens at
    most 100, so "200 at once" sent the second hundred only as the first were answered."""
    limits = httpx.Limits(max_connections=len(keys), max_keepalive_connections=len(keys))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def one(headers: dict[str, str]) -> tuple[str, dict[str, str]] | None:
            resp = await client.post("/v1/spawn", headers=headers, json={"track": "netplus"})
            return (resp.json()["scenario_id"], headers) if resp.status_code == 201 else None

        started = time.perf_counter()
        results = await asyncio.gather(*(one(h) for h in keys))
        return time.perf_counter() - started, [r for r in results if r is not None]


def wait_running(url: str, scenarios: Scenarios, every_s: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> int:
    """Poll until every scenario is running (or ended); how many run.

    ``every_s`` None: all pending scenarios in turn, then 0.1 s, again (the figure is the
    wall time until the last one runs). A number: each learner's status every ``every_s``
    after its last answer, as the lab page does (lab.js, 1.5 s), for a figure read from the
    store's transition times: 200 learners polled in a tight loop cost the spawn service
    and this client CPU the burst's labs were waiting for, which browsers would not."""
    pending = dict(scenarios)
    due = dict.fromkeys(pending, clock())
    running = 0
    reasons: set[str] = set()
    deadline = clock() + RUNNING_TIMEOUT_S
    with httpx.Client(base_url=url, timeout=30) as client:
        while pending and clock() < deadline:
            for sid, headers in list(pending.items()):
                if every_s is not None and due[sid] > clock():
                    continue
                body = client.get(f"/v1/scenarios/{sid}", headers=headers).json()
                due[sid] = clock() + (every_s or 0.0)
                state = body.get("state")
                if state in ("running", "failed", "expired", "deleted"):
                    running += state == "running"
                    if state != "running":
                        reasons.add(f"{state}: {body.get('reason')}")
                    del pending[sid]
            if every_s is None:
                sleep(0.1)
            elif pending:
                sleep(max(0.0, min(due[sid] for sid in pending) - clock()))
    for reason in sorted(reasons):
        print(f"  not running: {reason}")
    return running


def labs_per_node(topology: Topology) -> str:
    """How many labs each node holds now (its prefix's switch namespaces)."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in netns.splitlines() if line.strip()]
    return ", ".join(
        f"{node.node} {sum(n.startswith(f'{node.prefix}.') and n.endswith('.sw') for n in names)}"
        for node in topology.nodes)


def nodes_cli_available() -> bool:
    """Lab nodes exist (issue 15 item 3) when `forge nodes list` is a command."""
    proc = subprocess.run([sys.executable, "-m", "forge", "nodes", "list", "--help"],
                          capture_output=True, timeout=60)
    return proc.returncode == 0


def slots_held(storage: Path, scenario_ids: list[str]) -> int:
    """How many of these scenarios still hold their quota slot (the store, as spawn sees it)."""
    from sqlalchemy import func, select

    from forge.store.db import Database
    from forge.store.models import QuotaSlot

    db = Database(f"sqlite:///{storage}/forge.db")
    try:
        with db.read() as sess:
            return int(sess.scalar(select(func.count()).select_from(QuotaSlot).where(
                QuotaSlot.scenario_id.in_(scenario_ids), QuotaSlot.released_at.is_(None)))
                or 0)
    finally:
        db.engine.dispose()


def node_loss_s(sup: Supervisor, url: str, scenarios: Scenarios,
                storage: Path) -> tuple[float, float] | None:
    """kill -9 the last lab node; seconds until every scenario whose lab it held (found by
    the node's runtime prefix in `ip netns`) is failed, and until their quota slots are
    released. Needs lab nodes (item 3)."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout

    def held_by(name: str) -> set[str]:
        prefix = sup.children[name].env["FORGE_RUNTIME_PREFIX"]
        return {line.split(".")[1] for line in netns.splitlines()
                if line.startswith(f"{prefix}.")}
    # The node holding the most labs (a pull-based queue may give one node a whole burst).
    name = max((n for n in sup.children if n.startswith("orchestrator")),
               key=lambda n: len(held_by(n)))
    victim, held = sup.children[name], held_by(name)
    assert victim.proc is not None
    if not held:
        return None
    remaining = {sid: headers for sid, headers in scenarios if sid in held}
    lost = list(remaining)
    sup.children.pop(victim.name)  # not restarted: the node is gone
    started = time.perf_counter()
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    if victim.sock is not None:
        victim.sock.close()
    with httpx.Client(base_url=url, timeout=30) as client:
        while remaining and time.perf_counter() - started < RUNNING_TIMEOUT_S:
            for sid, headers in list(remaining.items()):
                if client.get(f"/v1/scenarios/{sid}", headers=headers).json().get(
                        "state") == "failed":
                    remaining.pop(sid)
            time.sleep(0.2)
        if remaining:
            return None
        failed_s = time.perf_counter() - started
        while slots_held(storage, lost) and time.perf_counter() - started < RUNNING_TIMEOUT_S:
            time.sleep(0.05)
    if slots_held(storage, lost):
        return None
    print(f"  node-loss: {len(lost)} lab(s) on the killed node")
    return failed_s, time.perf_counter() - started


def measure(nodes: int, measure_loss: bool) -> tuple[list[Run], tuple[float, float] | None]:
    """Start a platform with `nodes` lab nodes; RUNS bursts of K spawns; tear it down."""
    with tempfile.TemporaryDirectory(prefix="forge-scale-") as tmp:
        storage = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
        env.update(FORGE_ENV="dev", STORAGE_ROOT=tmp, DEV_ALLOW_XPLAN="true",
                   FORGE_RUNTIME_PREFIX="b" + secrets.token_hex(2),
                   FORGE_TEMPLATE_DIR=str(ROOT / "tests" / "fixtures" / "templates"))
        settings = load_settings(env)
        ports = {"spawn": free_port(), "orchestrator": free_port(), "scoreboard": free_port()}
        topology: Topology = plan(storage, ports, base_prefix=settings.runtime_prefix,
                                  nodes=nodes)
        sup = Supervisor(env, storage, ports=ports, bus_auth=bus_auth(settings),
                         topology=topology, report=lambda m: print(f"  [{m}]"))
        runs: list[Run] = []
        loss: tuple[float, float] | None = None
        try:
            sup.start()
            if not sup.wait_ready(120):
                raise SystemExit(f"platform with {nodes} node(s) not ready; logs in {tmp}/logs")
            url = sup.url("spawn")
            all_scenarios: Scenarios = []
            for run in range(RUNS):
                keys = learner_keys(storage, K, f"{nodes}n{run}")
                cpu = stack_cpu_s(sup)
                accept_s, scenarios = asyncio.run(burst(url, keys))
                started = time.perf_counter()
                running = wait_running(url, scenarios)
                runs.append(Run(len(scenarios), accept_s, running,
                                accept_s + time.perf_counter() - started,
                                stack_cpu_s(sup) - cpu))
                all_scenarios += scenarios
                r = runs[-1]
                print(f"  {nodes} node(s) run {run + 1}: {r.accepted}/{K} accepted in "
                      f"{r.accept_s:.2f}s, {r.running} running after {r.running_s:.2f}s, "
                      f"{r.cpu_s / max(r.accepted, 1) * 1000:.0f} ms CPU per lab")
            print(f"  labs per node: {labs_per_node(topology)}")
            if measure_loss and nodes > 1:
                loss = node_loss_s(sup, url, all_scenarios, storage)
        finally:
            sup.stop()
            destroyed = teardown_labs(settings, topology, env)
            print(f"  {nodes} node(s): stopped, destroyed {destroyed} lab(s)")
        return runs, loss


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench/scale_out.py needs root (the local runtime builds labs)")
    loss_supported = nodes_cli_available()
    figures: dict[int, tuple[float, float, float]] = {}
    loss: tuple[float, float] | None = None
    for nodes in NODE_COUNTS:
        runs, lost = measure(nodes, loss_supported)
        loss = lost if lost is not None else loss
        figures[nodes] = (
            statistics.median(r.accepted / r.accept_s for r in runs),
            statistics.median(r.running / r.running_s for r in runs),
            statistics.median(r.cpu_s / max(r.accepted, 1) for r in runs) * 1000)
        rate, labs, cpu = figures[nodes]
        print(f"{nodes} lab node(s), K={K} concurrent learners (median of {RUNS}): "
              f"{rate:,.1f} accepted spawns/s, {labs:,.2f} labs running/s, "
              f"{cpu:.0f} ms CPU per lab")
    (r1, l1, c1), (r3, l3, c3) = figures[1], figures[3]
    print(f"3 vs 1 lab nodes: accepted spawns/s x{r3 / r1:.2f}, labs running/s x{l3 / l1:.2f}, "
          f"CPU per lab x{c3 / c1:.2f}")
    if not loss_supported:
        print("node-loss: not measured (needs lab nodes, issue 15 item 3)")
    elif loss is None:
        print("node-loss: the lost node's labs were not all failed (slots released) within "
              f"{RUNNING_TIMEOUT_S:.0f}s")
    else:
        print(f"node-loss: kill -9 of a node to its labs failed: {loss[0]:.1f}s, "
              f"to their quota slots released: {loss[1]:.1f}s")


if __name__ == "__main__":
    main()
