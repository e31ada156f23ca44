"""A running `forge up` for the bench scripts, and what /proc says of its processes.

`running_forge_up` starts it as the operator would (a subprocess, its own storage root and
free ports, or BENCH_PORT_BASE and the next three, dev mode, the fixture templates),
returns once it says the platform is up, and stops it with SIGINT on the way out; `cpu_s`,
`switches`, `children` and `label` read its processes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from forge.bus.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def forge_env(prefix: str) -> dict[str, str]:
    """This environment without Forge's variables, plus dev mode, the fixture templates and
    a runtime prefix `prefix` + 4 hex."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
    env.update(FORGE_ENV="dev", FORGE_RUNTIME_PREFIX=prefix + secrets.token_hex(2),
               FORGE_TEMPLATE_DIR=str(ROOT / "tests" / "fixtures" / "templates"))
    return env


@contextlib.contextmanager
def running_forge_up(storage: str, prefix: str) -> Iterator[subprocess.Popen[str]]:
    """`forge up` on `storage` with `forge_env(prefix)`, once it says it is up."""
    env = forge_env(prefix)
    base = int(os.environ.get("BENCH_PORT_BASE") or 0)
    ports = [base + i for i in range(4)] if base else [free_port() for _ in range(3)]
    argv = [sys.executable, "-m", "forge", "up", "--storage", storage, "--spawn-port",
            str(ports[0]), "--orchestrator-port", str(ports[1]), "--scoreboard-port",
            str(ports[2])] + (["--nats-port", str(ports[3])] if base else [])
    up = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    try:
        assert up.stderr is not None
        for line in up.stderr:
            if "Forge is up" in line:
                break
        else:
            raise SystemExit("forge up did not come up")
        threading.Thread(target=up.stderr.read, daemon=True).start()  # keep it drained
        yield up
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()


def cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def parse_switches(status: str) -> tuple[int, int]:
    """(voluntary, involuntary) context switches from one /proc/.../status text."""
    counts = {"voluntary_ctxt_switches": 0, "nonvoluntary_ctxt_switches": 0}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in counts:
            counts[key] = int(value)
    return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]


def switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of every thread of `pid` now. A voluntary
    one is the thread going to sleep, so each is one wake-up: a count the machine's load
    does not inflate. An involuntary one is the thread preempted, which load does."""
    vol = invol = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            v, i = parse_switches((task / "status").read_text())
        except (OSError, ValueError):
            continue  # the thread ended
        vol, invol = vol + v, invol + i
    return vol, invol


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
