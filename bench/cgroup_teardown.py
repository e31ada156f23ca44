"""Benchmark a lab's cgroup teardown (kill + remove, as ``LocalRuntime._teardown`` does).

A lab-shaped tree (3 hosts, an ``init`` leaf each, limits on the lab and host levels) with
one ``sleep`` per host. Fast path: every process where the runtime put it. Slow path (v1
only): one of them moved to a pids cgroup outside the lab but left in its memory/cpu
cgroups (what a host agent moving one hierarchy at a time does), found when an rmdir is
busy. Prints medians of wall time and of this process's CPU per teardown, and the ratio.
Needs root. Everything created is removed at the end.

    .venv/bin/python bench/cgroup_teardown.py [--runs 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import time

from forge.runtime import Limits
from forge.runtime.local.cgroups import CGROUP_ROOT, Cgroups

HOSTS = ("client", "router", "server")


def _join(files: list[str], pid: int) -> None:
    for procs in files:
        with open(procs, "w", encoding="ascii") as fh:
            fh.write(str(pid))


def one(cg: Cgroups, scratch: str | None) -> tuple[float, float, int]:
    """Build a lab tree, start its sleepers, tear it down: (wall s, CPU s, pids killed by
    the slow path)."""
    stem = f"bcg.{secrets.token_hex(4)}"
    cg.create((stem,), Limits())
    procs = []
    try:
        for host in HOSTS:
            cg.create((stem, host), Limits())
            cg.create((stem, host, "init"), None)
            proc = subprocess.Popen(["sleep", "600"])
            procs.append(proc)
            _join(cg.procs_files(stem, host, "init"), proc.pid)
        if scratch is not None:  # the split: memory/cpu in the lab, pids outside it
            _join([os.path.join(scratch, "cgroup.procs")], procs[0].pid)
        wall, cpu = time.perf_counter(), time.process_time()
        cg.kill(stem)
        strays = cg.remove(stem)
        return time.perf_counter() - wall, time.process_time() - cpu, len(strays)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            cg.remove(stem)


def main() -> int:
    """Run both paths ``--runs`` times and print medians and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    cg = Cgroups.detect()
    scratch = None
    if cg.version == 1:
        scratch = os.path.join(CGROUP_ROOT, "pids", f"bcg-scratch.{secrets.token_hex(4)}")
        os.mkdir(scratch)
    try:
        rows = {"fast": [one(cg, None) for _ in range(args.runs)]}
        if scratch is not None:
            rows["slow"] = [one(cg, scratch) for _ in range(args.runs)]
    finally:
        if scratch is not None:
            os.rmdir(scratch)
    med = {k: (statistics.median(r[0] for r in v) * 1000,
               statistics.median(r[1] for r in v) * 1000) for k, v in rows.items()}
    for name, (wall, cpu) in med.items():
        killed = statistics.median(r[2] for r in rows[name])
        print(f"{name:5s} path: teardown {wall:7.2f} ms wall, {cpu:6.2f} ms CPU "
              f"(medians of {args.runs}; slow-path kills {killed:g})")
    if "slow" in med:
        print(f"slow/fast: wall x{med['slow'][0] / med['fast'][0]:.2f}, "
              f"CPU x{med['slow'][1] / med['fast'][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
