"""Runtime at class scale (needs root): CPU per lab, flat cost as labs pile up, bursts,
teardown, and 1,000 live labs on one node.

For the netplus-shaped lab of ``runtime.py`` (3 hosts, 2 subnets, a router) it measures
and records (``_report.record``, medians):

- ``lab_cpu_ms``: CPU of one create+destroy (this process and its reaped children; the
  kernel's own deferred namespace cleanup is not a process and is not counted);
- ``create_ratio_200``: create wall time with 200 labs alive over that with none, and
  CPU the same way (the figure that grew from the mounts bwrap had to read);
- ``burst50_p99_s``: p99 of 50 creates started at once, no pool;
- ``teardown_200_s``: ``destroy_many`` of 200 live labs;
- ``labs_1000_live``, ``lab_mem_mib``, ``orchestrator_rss_mib``: 1,000 labs alive at
  once (each sampled lab answers exec), memory charged per lab (cgroup) and the RSS of
  this process, which holds the runtime as the orchestrator does (runtime only: no
  HTTP, bus or store), then their teardown.

    .venv/bin/python bench/runtime_scale.py [--quick] [--live 1000] [--cycles 15]

``--quick`` (a few minutes): 8 cycles, 100 live labs for the ratio and teardown (the
figures say so), 300 for the capacity run.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from _report import record

from forge.runtime.local import LocalRuntime
from runtime import cgroup_memory_mb, cpu_seconds, lab, mem_available_mb, pct

SERVICE = "sleep infinity"


def cycles(rt: LocalRuntime, tag: str, n: int) -> tuple[float, float]:
    """Median create wall time (ms) and median create+destroy CPU (ms) over ``n`` labs."""
    walls, cpus = [], []
    for i in range(n):
        cpu0, start = cpu_seconds(), time.perf_counter()
        rt.create(lab(f"{tag}-{i}", SERVICE))
        walls.append((time.perf_counter() - start) * 1000)
        rt.destroy(f"{tag}-{i}")
        cpus.append((cpu_seconds() - cpu0) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def fill(rt: LocalRuntime, tag: str, count: int) -> list[str]:
    """Create ``count`` labs one after another (stops early when memory runs short)."""
    alive: list[str] = []
    for i in range(count):
        if mem_available_mb() < 2048:
            print(f"stopping at {len(alive)} labs: under 2 GiB available", file=sys.stderr)
            break
        rt.create(lab(f"{tag}-{i}", SERVICE))
        alive.append(f"{tag}-{i}")
    return alive


def rss_mib() -> float:
    """VmRSS of this process."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def burst(rt: LocalRuntime, size: int) -> tuple[list[float], float]:
    """``size`` creates started together: each one's seconds to running, and CPU per lab
    (create+destroy)."""
    ids = [f"burst-{i}" for i in range(size)]
    cpu0 = cpu_seconds()
    start = time.perf_counter()

    def create_at(lab_id: str) -> float:
        rt.create(lab(lab_id, SERVICE))
        return time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=size) as pool:
        done = list(pool.map(create_at, ids))
    failed = rt.destroy_many(ids)
    if failed:
        raise SystemExit(f"burst teardown failed: {failed}")
    return done, (cpu_seconds() - cpu0) / size * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="minutes, not an hour")
    parser.add_argument("--cycles", type=int, default=15, help="create+destroy cycles")
    parser.add_argument("--live", type=int, default=1000, help="labs for the capacity run")
    parser.add_argument("--burst", type=int, default=50, help="concurrent creates")
    args = parser.parse_args()
    n = 8 if args.quick else args.cycles
    pile = 100 if args.quick else 200
    live = min(args.live, 300) if args.quick else args.live

    state = tempfile.mkdtemp(prefix="forge-scale-")
    rt = LocalRuntime(state, prefix="s" + secrets.token_hex(2), workers=64)
    problems = rt.check()
    if problems:
        print("runtime unavailable:", "; ".join(problems), file=sys.stderr)
        return 2
    rows: list[str] = []
    try:
        rt.create(lab("warm", SERVICE))
        rt.destroy("warm")
        wall0, cpu0 = cycles(rt, "c0", n)
        record("lab_cpu_ms", round(cpu0, 1), cpu_ms_per_op=round(cpu0, 1),
               detail=f"netplus create+destroy, median of {n}, self+children CPU")
        rows.append(f"lab CPU create+destroy  {cpu0:.1f} ms   create wall {wall0:.0f} ms")

        done, cpu_burst = burst(rt, args.burst)
        p99 = pct(done, 99) / 1000
        record("burst50_p99_s", round(p99, 2), cpu_ms_per_op=round(cpu_burst, 1),
               detail=f"{args.burst} creates at once, p50 {pct(done, 50) / 1000:.2f} s, "
                      f"all running after {max(done):.2f} s")
        rows.append(f"burst of {args.burst}: p50 {pct(done, 50):.0f} ms p99 {p99 * 1000:.0f}"
                    f" ms, CPU/lab {cpu_burst:.1f} ms")

        alive = fill(rt, "pile", pile)
        walln, cpun = cycles(rt, "cn", n)
        ratio = walln / wall0
        record("create_ratio_200", round(ratio, 2), cpu_ms_per_op=round(cpun, 1),
               detail=f"{len(alive)} live: create {walln:.0f} ms vs {wall0:.0f} ms at 0; "
                      f"CPU {cpun:.1f} vs {cpu0:.1f} ms ({cpun / cpu0:.2f}x)")
        rows.append(f"create at {len(alive)} live / at 0: wall {ratio:.2f}x, "
                    f"CPU {cpun / cpu0:.2f}x")
        start = time.perf_counter()
        failed = rt.destroy_many(alive)
        teardown = time.perf_counter() - start
        if failed:
            raise SystemExit(f"teardown failed: {failed}")
        record("teardown_200_s", round(teardown, 2),
               detail=f"destroy_many of {len(alive)} live labs")
        rows.append(f"teardown of {len(alive)}: {teardown:.2f} s")

        rss0, mem0 = rss_mib(), mem_available_mb()
        start = time.perf_counter()
        alive = fill(rt, "cap", live)
        took = time.perf_counter() - start
        time.sleep(1)
        charged = [cgroup_memory_mb(rt, x) for x in alive]
        machine = (mem0 - mem_available_mb()) / max(1, len(alive))
        running = sum(1 for info in rt.list() if info.state == "running")
        sample = alive[:: max(1, len(alive) // 20)]
        answering = sum(rt.exec(x, "client", ["true"]).exit_code == 0 for x in sample)
        rss = rss_mib()
        start = time.perf_counter()
        failed = rt.destroy_many(alive)
        gone = time.perf_counter() - start
        if failed:
            raise SystemExit(f"teardown failed: {failed}")
        record("labs_1000_live", running,
               detail=f"{running} running ({answering}/{len(sample)} sampled answer exec); "
                      f"filled at {len(alive) / took:.1f} labs/s, torn down in {gone:.1f} s")
        record("lab_mem_mib", round(statistics.median(charged), 2),
               detail=f"cgroup-charged median; machine MemAvailable delta "
                      f"{machine:.1f} MiB/lab (kernel objects too)")
        record("orchestrator_rss_mib", round(rss, 1),
               detail=f"runtime-only process at {running} labs (was {rss0:.0f} MiB "
                      "before): the orchestrator's runtime state, no HTTP/bus/store")
        rows.append(f"{running} live labs ({answering}/{len(sample)} answer), "
                    f"{statistics.median(charged):.2f} MiB/lab cgroup, {machine:.1f} MiB/lab "
                    f"machine, RSS {rss:.0f} MiB, fill {len(alive) / took:.1f} labs/s, "
                    f"teardown {gone:.1f} s")
    finally:
        rt.destroy_many(info.lab_id for info in rt.list())
        rt.close()
        shutil.rmtree(state, ignore_errors=True)
        for row in rows:
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
