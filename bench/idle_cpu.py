"""Idle CPU of every process of `forge up` (issue 19 item 5: each ≤ 0.5 % of a core).

Starts `forge up` as the operator would (a subprocess, its own storage root and free
ports, the fixture templates), waits until it says the platform is up, lets it settle,
then reads utime+stime from /proc/<pid>/stat of `forge up` itself, each service and
nats-server at the start and the end of an idle window (BENCH_IDLE_S, default 30 s): CPU
time, not wall time, so other work on the machine does not move the figure much. Records
`idle_cpu_pct` = the worst service's share of one core, with every process in the detail.

    .venv/bin/python bench/idle_cpu.py          # needs root (the orchestrator's runtime)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from _forge_up import children, cpu_s, label, running_forge_up
from _report import record

IDLE_S = float(os.environ.get("BENCH_IDLE_S", "30"))
SETTLE_S = 5.0


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("bench/idle_cpu.py needs root (forge up runs the local runtime)")
    with tempfile.TemporaryDirectory(prefix="forge-idle-") as tmp, \
            running_forge_up(tmp, "i") as up:
        time.sleep(SETTLE_S)
        procs = {up.pid: "forge up"}
        for pid in children(up.pid):
            name = label(pid)
            if name in ("spawn", "orchestrator", "scoreboard", "nats"):
                procs[pid] = name
        before = {pid: cpu_s(pid) for pid in procs}
        started = time.monotonic()
        time.sleep(IDLE_S)
        elapsed = time.monotonic() - started
        share = {procs[pid]: (cpu_s(pid) - before[pid]) / elapsed * 100 for pid in procs}
    for name, pct in sorted(share.items(), key=lambda kv: -kv[1]):
        print(f"  {name:14s} {pct:6.2f} % of a core")
    services = {k: v for k, v in share.items() if k != "nats"}
    worst = max(services, key=lambda k: services[k])
    detail = ", ".join(f"{k} {v:.2f}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]))
    print(f"idle CPU over {elapsed:.0f} s: worst {worst} {services[worst]:.2f} % of a core")
    record("idle_cpu_pct", round(services[worst], 3),
           detail=f"% of a core over {elapsed:.0f} s idle under forge up: {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
