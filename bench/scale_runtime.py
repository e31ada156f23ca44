"""Benchmark the local runtime at class scale (needs root): issue 19 items 2 and 7.

For the netplus-shaped lab (3 hosts, 2 subnets, a router; the machine's userland), prints
and records: create+destroy CPU per lab (the machine's, /proc/stat less idle: the figure
the target is for; beside it the CPU of this process and its children from a cgroup,
``_cgroup_cpu``, which other work on the machine does not touch but which misses the
kernel threads freeing the labs' namespaces), create time with 0 and with N live labs
(median, ratio), a burst of concurrent creates (p50/p99), a grading check's time with 0
and with N live labs (median, ratio), the teardown of N labs, and memory per live lab
(MemAvailable delta) with this process's RSS at the largest number of live labs reached.
Everything created is torn down at the end, also on failure.

    .venv/bin/python bench/scale_runtime.py [--cycles 30] [--live 200] [--burst 50]
                                            [--max-live 1000]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from _cgroup_cpu import CpuCgroup
from _report import record

from forge.runtime.local import LocalRuntime
from runtime import lab, machine_cpu_ms, median, mem_available_mb, own_cpu_s, pct

SERVICE = "sleep infinity"
# Creates per series of the ratios: their medians moved by 0.3-0.5x between runs at 15.
SERIES = 41


def rss_mib() -> float:
    """This process's resident set size (VmRSS), in MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_per_lab(rt: LocalRuntime, cycles: int, meter: CpuCgroup,
                batch: int = 10) -> tuple[float | None, float, float]:
    """Machine CPU (ms) of one create+destroy, sequentially: the median of batches of
    ``batch`` (``machine_cpu_ms``; None when a batch's figure was noise of the machine's
    other work); the median share of this process (the runtime); and the median of the
    batches' CPU in ``meter`` (this process and its children, ``_cgroup_cpu``), which
    the machine's other work does not touch."""
    own: list[float] = []
    grouped: list[float] = []

    def cycle(i: int, tag: str) -> None:
        cpu0 = own_cpu_s()
        rt.create(lab(f"cpu-{tag}-{i}", SERVICE))
        rt.destroy(f"cpu-{tag}-{i}")
        own.append((own_cpu_s() - cpu0) * 1000)

    def counted(i: int, tag: str) -> None:
        if i == 0:
            grouped.append(meter.usage_s())
        cycle(i, tag)
        if i == batch - 1:  # before machine_cpu_ms's settle: this group's work is done
            grouped[-1] = (meter.usage_s() - grouped[-1]) * 1000 / batch

    batches = [machine_cpu_ms(lambda i, b=b: counted(i, str(b)), batch)
               for b in range(max(1, cycles // batch))]
    measured = [b for b in batches if b is not None]
    return ((median(measured) if len(measured) == len(batches) else None), median(own),
            median(grouped))


def create_times(rt: LocalRuntime, tag: str, count: int) -> list[float]:
    """Wall time (s) of ``count`` sequential creates, each destroyed right after."""
    walls = []
    for i in range(count):
        start = time.perf_counter()
        rt.create(lab(f"{tag}-{i}", SERVICE))
        walls.append(time.perf_counter() - start)
        rt.destroy(f"{tag}-{i}")
    return walls


def netns_work_running() -> bool:
    """Whether a kernel worker is running the network namespace workqueue's work (its
    name then ends in ``+netns``: cleanup_net freeing destroyed labs' namespaces)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
                if fh.read().rstrip("\n").endswith("+netns"):
                    return True
        except OSError:
            continue
    return False


def settle(timeout_s: float = 60.0) -> float:
    """Wait until the kernel has freed the namespaces of labs destroyed before: no worker
    running netns work for 2 s on end, sampled every 50 ms (a count of namespaces does
    not tell: the slab keeps freed objects counted). The seconds waited (``timeout_s``
    when it never got there)."""
    start = time.perf_counter()
    quiet_since = start
    while time.perf_counter() - start < timeout_s:
        if netns_work_running():
            quiet_since = time.perf_counter()
        elif time.perf_counter() - quiet_since >= 2:
            break
        time.sleep(0.05)
    return time.perf_counter() - start


def kept_create_times(rt: LocalRuntime, tag: str, count: int) -> tuple[list[float], float]:
    """Wall time (s) of ``count`` sequential creates kept alive until all are made (then
    destroyed together, and ``settle`` waited for), started once the kernel has freed
    every lab destroyed before: no create overlaps that freeing, which ``create_times``
    (each lab destroyed right after) measures with it. Up to ``count`` - 1 more labs are
    live than at the start. Also the seconds the first wait took."""
    waited = settle()
    walls, ids = [], []
    try:
        for i in range(count):
            start = time.perf_counter()
            rt.create(lab(f"{tag}-{i}", SERVICE))
            walls.append(time.perf_counter() - start)
            ids.append(f"{tag}-{i}")
    finally:
        rt.destroy_many(ids)
        settle()
    return walls, waited


def check_times(rt: LocalRuntime, lab_id: str, count: int) -> list[float]:
    """Wall time (s) of ``count`` sequential grading checks (``/bin/true``) in ``lab_id``."""
    walls = []
    for _ in range(count):
        start = time.perf_counter()
        result = rt.run_check(lab_id, "server", ["/bin/true"])
        walls.append(time.perf_counter() - start)
        if result.exit_code != 0:
            raise SystemExit(f"a check failed: {result.stderr_text}")
    return walls


def fill(rt: LocalRuntime, tag: str, count: int, floor_mib: float = 2048) -> list[str]:
    """Create up to ``count`` labs 4 at a time, stopping while MemAvailable is above
    ``floor_mib``; returns the ids created."""
    ids = [f"{tag}-{i}" for i in range(count)]
    made: list[str] = []

    def one(lab_id: str) -> str | None:
        if mem_available_mb() < floor_mib:
            return None
        rt.create(lab(lab_id, SERVICE))
        return lab_id

    with ThreadPoolExecutor(max_workers=4) as pool:
        for got in pool.map(one, ids):
            if got is not None:
                made.append(got)
    return made


def task_count() -> int:
    """Tasks (threads of every process) on the machine: what the kernel's ``pivot_root``
    walks, under the machine-wide mount lock, each time a sandbox starts (twice per host)."""
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                count += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
    return count


def foreign_tasks_ratio(rt: LocalRuntime, tasks: int) -> tuple[float, float]:
    """Median create time with ``tasks`` more idle processes on the machine (``sleep``, no
    namespace, no mount) over the time without them, and the time without them (s): how
    much of the slow-down at N live labs the number of tasks alone explains."""
    without = median(create_times(rt, "bare", SERIES))
    sleepers: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(tasks):
            sleepers.append(subprocess.Popen(["/bin/sleep", "3600"],
                                             stdin=subprocess.DEVNULL))
        settle()
        with_tasks = median(create_times(rt, "tasks", SERIES))
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()
    settle()
    return with_tasks / without, without


def destroy_all(rt: LocalRuntime, ids: list[str]) -> float:
    """Seconds to destroy ``ids`` with the runtime's bulk teardown."""
    start = time.perf_counter()
    rt.destroy_many(ids)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=30, help="create+destroy cycles")
    parser.add_argument("--live", type=int, default=200, help="live labs for the ratio")
    parser.add_argument("--burst", type=int, default=50, help="concurrent creates")
    parser.add_argument("--max-live", type=int, default=1000, help="live labs to try")
    args = parser.parse_args()

    state = tempfile.mkdtemp(prefix="forge-scale-")
    prefix = os.environ.get("FORGE_RUNTIME_PREFIX") or "s" + secrets.token_hex(2)
    # Entered before the runtime starts anything: its helpers and sandboxes are children.
    meter = CpuCgroup(f"{prefix}-bench-cpu")
    meter.enter()
    rt = LocalRuntime(state, prefix=prefix, workers=64)
    problems = rt.check()
    if problems:
        meter.leave()
        meter.close()
        print("runtime unavailable:", "; ".join(problems), file=sys.stderr)
        return 2
    lines: list[str] = []
    try:
        rt.create(lab("warm", SERVICE))  # page cache, first bwrap start
        rt.destroy("warm")
        # The kernel may still be freeing the namespaces of labs an earlier bench destroyed
        # (in `make bench`, runtime.py and scale_out.py run just before): not this lab's CPU.
        settle()
        cpu, own, grouped = cpu_per_lab(rt, args.cycles, meter)
        counted = (f"cgroup figure {grouped:.1f} ms ({meter.includes()}); the runtime "
                   f"process alone {own:.1f} ms")
        if cpu is None:
            # Not recorded: the table then says "not measured" instead of a figure that
            # is the other work's noise (it read 0 ms on a machine kept busy).
            lines.append(f"create+destroy machine CPU per lab: not measured (the machine was "
                         f"busy with other work); {counted}")
        else:
            lines.append(f"create+destroy machine CPU per lab (median of batches of 10): "
                         f"{cpu:.1f} ms; {counted}")
        # The target is the machine's CPU per lab (issue 19), kernel work included: the
        # cgroup figure is printed beside it, never compared with the target in its place.
        record("lab_cpu_ms", None if cpu is None else round(cpu, 1),
               cpu_ms_per_op=round(grouped, 1),
               detail=f"3 hosts, 2 subnets; value: machine CPU (/proc/stat less idle, "
                      f"median of batches of 10; "
                      f"{'not measured: the machine was busy' if cpu is None else 'measured'})"
                      f"; CPU ms/op: {counted}")

        at0 = median(create_times(rt, "at0", SERIES))
        rt.create(lab("probe", SERVICE))  # the lab graded at 0 and at N live labs
        check0 = median(check_times(rt, "probe", 15))
        # The burst comes before any mass teardown: the kernel frees a destroyed lab's
        # namespaces afterwards, in a worker that holds the locks a create needs.
        start = time.perf_counter()

        def create_at(lab_id: str) -> float:
            rt.create(lab(lab_id, SERVICE))
            return time.perf_counter() - start

        ids = [f"burst-{i}" for i in range(args.burst)]
        with ThreadPoolExecutor(max_workers=args.burst) as pool:
            burst = list(pool.map(create_at, ids))
        p50, p99 = pct(burst, 50) / 1000, pct(burst, 99) / 1000
        lines.append(f"burst of {args.burst} creates: p50 {p50:.2f} s, p99 {p99:.2f} s")
        record("burst50_p99_s", round(p99, 2), detail=f"{args.burst} at once, p50 {p50:.2f} s")
        destroy_all(rt, ids)
        walls0, waited0 = kept_create_times(rt, "kept0", SERIES)
        kept0 = median(walls0)
        tasks0 = task_count()
        live = fill(rt, "live", args.live)
        lab_tasks = task_count() - tasks0
        atn = median(create_times(rt, "atn", SERIES))
        ratio = atn / at0
        lines.append(f"create at 0 live: {at0 * 1000:.1f} ms; at {len(live)} live: "
                     f"{atn * 1000:.1f} ms; ratio {ratio:.2f}")
        record("create_ratio_200", round(ratio, 2),
               detail=f"median create {at0 * 1000:.0f} ms at 0, {atn * 1000:.0f} ms at "
                      f"{len(live)} live")
        checkn = median(check_times(rt, "probe", 15))
        lines.append(f"grading check at 0 live: {check0 * 1000:.1f} ms; at {len(live)} live: "
                     f"{checkn * 1000:.1f} ms; ratio {checkn / check0:.2f}")
        record("check_ratio_200", round(checkn / check0, 2),
               detail=f"median /bin/true check {check0 * 1000:.0f} ms at 0, "
                      f"{checkn * 1000:.0f} ms at {len(live)} live")
        wallsn, waitedn = kept_create_times(rt, "keptn", SERIES)
        keptn = median(wallsn)
        rt.destroy("probe")
        lines.append(f"create, none overlapping a teardown's kernel cleanup: at 1-{SERIES} live "
                     f"{kept0 * 1000:.1f} ms; at {len(live) + 1}-{len(live) + SERIES} live "
                     f"{keptn * 1000:.1f} ms; ratio {keptn / kept0:.2f}")
        record("create_ratio_200_kept", round(keptn / kept0, 2),
               detail=f"median create {kept0 * 1000:.0f} ms at 1-{SERIES} live, "
                      f"{keptn * 1000:.0f} ms at {len(live) + 1}-{len(live) + SERIES}; each "
                      f"series once the kernel freed the labs destroyed before (waited "
                      f"{waited0:.1f} s and {waitedn:.1f} s; 60 s is the limit)")
        teardown = destroy_all(rt, live)
        lines.append(f"teardown of {len(live)} labs: {teardown:.2f} s")
        record("teardown_200_s", round(teardown, 2), detail=f"{len(live)} labs, destroy_many")
        settle()  # the memory baseline below must not include labs being freed
        # What grows with live labs: the kernel's pivot_root (bwrap calls it twice per
        # host) walks every task on the machine under the machine-wide mount lock. The
        # same number of plain sleeping processes, with no lab live, slows creates alike.
        tasks_ratio, bare = foreign_tasks_ratio(rt, lab_tasks)
        lines.append(f"create with {lab_tasks} idle processes (the tasks of {len(live)} live "
                     f"labs, no lab live) / without: {tasks_ratio:.2f} ({bare * 1000:.1f} ms "
                     f"without)")
        record("create_ratio_tasks", round(tasks_ratio, 2),
               detail=f"{lab_tasks} sleeping processes, as many tasks as {len(live)} live "
                      f"labs had; median create {bare * 1000:.0f} ms without them")


        rss0, avail0 = rss_mib(), mem_available_mb()
        start = time.perf_counter()
        many = fill(rt, "many", args.max_live)
        took = time.perf_counter() - start
        time.sleep(1)
        per_lab = (avail0 - mem_available_mb()) / max(1, len(many))
        running = sum(1 for info in rt.list() if info.state == "running")
        rss = rss_mib()
        lines.append(f"{running} live labs ({took:.0f} s to fill, {len(many) / took:.1f}/s): "
                     f"{per_lab:.2f} MiB each (MemAvailable), RSS {rss0:.0f} -> {rss:.0f} MiB")
        record("labs_1000_live", running, detail=f"filled in {took:.0f} s, 4 at a time")
        record("lab_mem_mib", round(per_lab, 2), detail="MemAvailable delta per live lab")
        record("orchestrator_rss_mib", round(rss, 1),
               detail=f"runtime process RSS at {running} labs (at 0: {rss0:.0f} MiB)")
        teardown = destroy_all(rt, many)
        lines.append(f"teardown of {len(many)} labs: {teardown:.2f} s")
    finally:
        leftover = [info.lab_id for info in rt.list()]
        if leftover:
            rt.destroy_many(leftover)
        rt.close()
        meter.close()
        shutil.rmtree(state, ignore_errors=True)
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
