"""CPU and time to start the platform and to run one operator command (not in issue 19).

Every restart of a service (an operator's, a supervisor's after a crash, a rotation step)
and every `forge …` command pays its start-up before doing anything; the test suite pays
it thousands of times. Measures, as the operator runs them:

- `forge up` (dev, free ports, fixture templates) until it says the platform is up: the
  wall time, and each service's CPU (utime+stime from /proc) at that moment; BENCH_STARTS
  runs (default 5), medians.
- `forge entitlements grant` on an existing store: the CPU of the whole process (from
  getrusage of children), BENCH_COMMANDS runs (default 7), median.

    .venv/bin/python bench/startup.py          # needs root (the orchestrator's runtime)
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from _forge_up import children, cpu_s, forge_env, label, running_forge_up
from _report import record

STARTS = int(os.environ.get("BENCH_STARTS", "5"))
COMMANDS = int(os.environ.get("BENCH_COMMANDS", "7"))
SERVICES = ("spawn", "orchestrator", "scoreboard")


def one_start(storage: str) -> tuple[float, dict[str, float]]:
    """Seconds from `forge up` to "Forge is up", and each service's CPU seconds then."""
    started = time.monotonic()
    with running_forge_up(storage, "u") as up:
        wall = time.monotonic() - started
        cpu = {label(pid): cpu_s(pid) for pid in children(up.pid)}
    return wall, {name: cpu[name] for name in SERVICES}


def one_command(storage: str) -> float:
    """CPU seconds of one `forge entitlements grant` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "forge", "--storage", storage, "entitlements",
                    "grant", "--tenant", "acme", "--plan", "TEAM"], env=forge_env("u"), check=True,
                   stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("bench/startup.py needs root (forge up runs the local runtime)")
    walls: list[float] = []
    cpus: dict[str, list[float]] = {name: [] for name in SERVICES}
    with tempfile.TemporaryDirectory(prefix="forge-start-") as tmp:
        one_start(tmp)  # the first start migrates a new store: not a restart
        for _ in range(STARTS):
            wall, cpu = one_start(tmp)
            walls.append(wall)
            for name in SERVICES:
                cpus[name].append(cpu[name])
        commands = [one_command(tmp) for _ in range(COMMANDS)]
    med = {name: statistics.median(values) for name, values in cpus.items()}
    costliest = max(med, key=lambda n: med[n])
    detail = ", ".join(f"{n} {v:.2f} s" for n, v in med.items())
    print(f"forge up → up: {statistics.median(walls):.2f} s wall (median of {STARTS}); "
          f"CPU at ready: {detail}")
    print(f"forge entitlements grant: {statistics.median(commands):.2f} s CPU "
          f"(median of {COMMANDS})")
    record("platform_start_s", round(statistics.median(walls), 2),
           detail=f"forge up to 'Forge is up' on an existing store, median of {STARTS}")
    record("service_start_cpu_s", round(med[costliest], 2),
           cpu_ms_per_op=round(med[costliest] * 1000),
           detail=f"CPU at ready, median of {STARTS}: {detail}")
    record("command_cpu_s", round(statistics.median(commands), 2),
           cpu_ms_per_op=round(statistics.median(commands) * 1000),
           detail=f"forge entitlements grant, median of {COMMANDS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
