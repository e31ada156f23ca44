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
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _report import record

from forge.bus.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
IDLE_S = float(os.environ.get("BENCH_IDLE_S", "30"))
SETTLE_S = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (via /proc/<pid>/task/*/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def label(pid: int) -> str:
    """A short name: `forge serve spawn` → spawn, nats-server → nats."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if "serve" in words:
        return words[words.index("serve") + 1]
    if any(w.endswith("nats-server") for w in words):
        return "nats"
    return " ".join(words[:3])[-40:]


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("bench/idle_cpu.py needs root (forge up runs the local runtime)")
    with tempfile.TemporaryDirectory(prefix="forge-idle-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
        env.update(FORGE_ENV="dev", FORGE_RUNTIME_PREFIX="i" + secrets.token_hex(2),
                   FORGE_TEMPLATE_DIR=str(ROOT / "tests" / "fixtures" / "templates"))
        ports = [free_port() for _ in range(3)]
        argv = [sys.executable, "-m", "forge", "up", "--storage", tmp, "--spawn-port",
                str(ports[0]), "--orchestrator-port", str(ports[1]), "--scoreboard-port",
                str(ports[2])]
        up = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        try:
            assert up.stderr is not None
            for line in up.stderr:
                if "Forge is up" in line:
                    break
            else:
                raise SystemExit("forge up did not come up")
            threading.Thread(target=up.stderr.read, daemon=True).start()  # keep it drained
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
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
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
