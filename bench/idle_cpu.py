"""Idle CPU of every process of `forge up` (issue 19 item 5: each ≤ 0.5 % of a core).

Starts `forge up` as the operator would (a subprocess, its own storage root and free
ports, the fixture templates), waits until it says the platform is up, lets it settle,
then reads, at the start and the end of an idle window (BENCH_IDLE_S, default 60 s, as the
runbook's figures are taken), each process's utime+stime (/proc/<pid>/stat) and its
threads' context switches (/proc/<pid>/task/*/status): `forge up` itself, each service and
nats-server. CPU % is what the issue's target is in, but on a busy machine each wake-up
costs more (caches, frequency, preemption): one run read every process 2.5-8x higher than
a careful re-run of the same code. Wake-ups per second (voluntary switches: a thread going
to sleep) are a count the machine's load does not inflate, printed beside it, with the
preemptions (involuntary switches, which load does inflate). A reference sleeper (Python,
10 wake-ups a second, nothing else) is read the same way over the same window: its CPU per
wake-up says how dear the machine made a wake-up during this reading, and the load
average says whether other work shared the cores. Records `idle_cpu_pct` = the worst
service's share of one core and `idle_wakeups_s` = the worst service's wake-ups a second,
with every process and the reference in the detail.

    .venv/bin/python bench/idle_cpu.py          # needs root (the orchestrator's runtime)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from _forge_up import children, cpu_s, label, running_forge_up, switches
from _report import record

IDLE_S = float(os.environ.get("BENCH_IDLE_S", "60"))
SETTLE_S = 5.0
REFERENCE = "reference"  # the sleeper's row
SLEEPER = "import time\nwhile True:\n    time.sleep(0.1)\n"


@dataclass(frozen=True)
class Reading:
    """What one process used over the window: CPU seconds, voluntary and involuntary
    context switches (every thread's)."""

    cpu_s: float
    wakeups: int
    preempted: int


def snapshot(pid: int) -> Reading:
    """The process's totals now (0 for a process that is gone)."""
    vol, invol = switches(pid)
    return Reading(cpu_s(pid), vol, invol)


def used(before: Reading, after: Reading) -> Reading:
    """The difference over the window (a count that fell, when threads ended: 0)."""
    return Reading(max(0.0, after.cpu_s - before.cpu_s), max(0, after.wakeups - before.wakeups),
                   max(0, after.preempted - before.preempted))


def report(readings: dict[str, Reading], elapsed_s: float,
           load: tuple[float, float], cores: int) -> list[str]:
    """The lines printed: one per process (CPU % of a core, wake-ups/s, preemptions/s, µs
    of CPU per wake-up), the reference sleeper last, then whether the machine was busy."""
    lines = [f"  {'process':14s} {'% core':>7s} {'wake/s':>7s} {'preempt/s':>9s} "
             f"{'µs/wake':>8s}"]
    order = sorted((k for k in readings if k != REFERENCE), key=lambda k: -readings[k].cpu_s)
    for name in order + ([REFERENCE] if REFERENCE in readings else []):
        r = readings[name]
        per_wake = r.cpu_s / r.wakeups * 1e6 if r.wakeups else 0.0
        lines.append(f"  {name:14s} {r.cpu_s / elapsed_s * 100:7.2f} "
                     f"{r.wakeups / elapsed_s:7.1f} {r.preempted / elapsed_s:9.1f} "
                     f"{per_wake:8.0f}")
    busy = max(load) > cores
    lines.append(f"  load average {load[0]:.1f} → {load[1]:.1f} on {cores} cores: "
                 + ("BUSY, other work shared the cores; CPU % reads high, wake-ups/s hold"
                    if busy else "quiet"))
    return lines


def worst(readings: dict[str, Reading], elapsed_s: float) -> tuple[str, float, float]:
    """The service (not nats-server, not the reference) using the most CPU: its name, %
    of a core, and the most wake-ups a second of any service."""
    services = {k: r for k, r in readings.items() if k not in ("nats", REFERENCE)}
    name = max(services, key=lambda k: services[k].cpu_s)
    wake = max(r.wakeups for r in services.values()) / elapsed_s
    return name, services[name].cpu_s / elapsed_s * 100, wake


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("bench/idle_cpu.py needs root (forge up runs the local runtime)")
    with tempfile.TemporaryDirectory(prefix="forge-idle-") as tmp, \
            running_forge_up(tmp, "i") as up:
        sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER])
        try:
            time.sleep(SETTLE_S)
            procs = {up.pid: "forge up", sleeper.pid: REFERENCE}
            for pid in children(up.pid):
                name = label(pid)
                if name in ("spawn", "orchestrator", "scoreboard", "nats"):
                    procs[pid] = name
            load_before = os.getloadavg()[0]
            before = {pid: snapshot(pid) for pid in procs}
            started = time.monotonic()
            time.sleep(IDLE_S)
            after = {pid: snapshot(pid) for pid in procs}
            elapsed = time.monotonic() - started
            load = (load_before, os.getloadavg()[0])
        finally:
            sleeper.kill()
            sleeper.wait()
    readings = {procs[pid]: used(before[pid], after[pid]) for pid in procs}
    lines = report(readings, elapsed, load, os.cpu_count() or 1)
    print("\n".join(lines))
    name, pct, wake = worst(readings, elapsed)
    print(f"idle CPU over {elapsed:.0f} s: worst {name} {pct:.2f} % of a core; "
          f"most wake-ups {wake:.1f}/s")
    detail = "; ".join(" ".join(line.split()) for line in lines[1:])
    record("idle_cpu_pct", round(pct, 3),
           detail=f"over {elapsed:.0f} s idle under forge up (% core, wake/s, preempt/s, "
                  f"µs/wake): {detail}")
    record("idle_wakeups_s", round(wake, 2),
           detail=f"most voluntary context switches a second of any service's threads "
                  f"over {elapsed:.0f} s idle (not inflated by the machine's load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
