"""What a detached, endlessly printing shell costs the node (the orchestrator's process).

A learner runs `yes` and closes the tab. The node's terminal session stays (so a reconnect
reattaches), and this measures the CPU its process spends on that session afterwards: the
real `TerminalSessions`, the real recording wrapper (asciicast file under a temporary
storage root) and a real PTY running `yes`; the only difference from a lab is that the PTY's
program runs on this machine, not in a lab host (no root needed). One socket attaches and
goes, then the process CPU time (user + system, `os.times`, as in /proc/self/stat) is sampled
over `--seconds`, `--runs` times. Prints the median CPU seconds per second, the bytes read
from the shell while detached and the recording's size, for the node as it is and with
the detached flow control turned off (the scrollback ring and batched recording only).

    .venv/bin/python bench/terminal_detached.py [--runs 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import tempfile
from pathlib import Path

from forge.runtime.base import TtySession
from forge.runtime.local.tty import LocalTty
from forge.runtime.recording import recorded_tty, recordings_dir
from forge.services.orchestrator import terminal_sessions
from forge.services.orchestrator.terminal_sessions import TerminalSessions
from forge.services.orchestrator.terminal_slots import TerminalSlots, signed_out

PRINTER = ["/bin/sh", "-c", "exec yes"]


class HostPrinter:
    """An engine whose every terminal is a PTY running `yes` on this machine."""

    def tty(self, lab_id: str, host: str, rows: int = 24, cols: int = 80) -> TtySession:
        holder: list[LocalTty] = []

        def kill_tree() -> None:
            for tty in holder:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(tty._proc.pid, signal.SIGKILL)  # the group it started

        tty = LocalTty(PRINTER, {"PATH": "/usr/bin:/bin"}, rows, cols, kill_tree,
                       lambda _t: None)
        holder.append(tty)
        return tty


def cpu_now() -> float:
    """CPU seconds (user + system) this process used so far."""
    times = os.times()
    return times.user + times.system


async def one_run(root: Path, lab: str, seconds: float) -> tuple[float, int | None, int]:
    """CPU per second while detached, bytes read while detached, recording size."""
    sessions = TerminalSessions(TerminalSlots())
    opener = recorded_tty(HostPrinter(), root)
    session, _new = await sessions.get_or_open(opener, asyncio.to_thread, lab, "client", 2,
                                               3600, (24, 80))
    att, _replay = session.attach()
    await asyncio.sleep(0.2)  # some output flows to the socket, then the tab is closed
    session.detach(att)
    read_before = getattr(session, "output_bytes", None)  # None: code before the counter
    start = cpu_now()
    await asyncio.sleep(seconds)
    used = cpu_now() - start
    detached_read = None if read_before is None else session.output_bytes - read_before
    for slot in sessions.close_lab(lab, signed_out()):
        await slot.done.wait()
    size = sum(p.stat().st_size for p in recordings_dir(root, lab).iterdir())
    return used / seconds, detached_read, size


async def series(runs: int, seconds: float, label: str) -> None:
    """Print the median of `runs` measurements."""
    cpu: list[float] = []
    read: list[int | None] = []
    sizes: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(runs):
            per_s, detached, size = await one_run(Path(tmp), f"scn-{n:016x}", seconds)
            cpu.append(per_s)
            read.append(detached)
            sizes.append(size)
    print(f"{label}: CPU {statistics.median(cpu):.3f} s per s (median of {runs} x "
          f"{seconds:g} s; runs {', '.join(f'{c:.3f}' for c in cpu)}), read while detached "
          f"{_kib(read)}, recording "
          f"{statistics.median(sizes) / 1024:.0f} KiB")


def _kib(values: list[int | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known) / 1024:.0f} KiB" if known else "not counted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"one detached `yes` shell, orchestrator process CPU over {args.seconds:g} s")
    limit = getattr(terminal_sessions, "DETACHED_READ_BYTES", None)
    asyncio.run(series(args.runs, args.seconds, "this code" if limit is None
                       else "flow control on (as shipped)"))
    if limit is not None:
        terminal_sessions.DETACHED_READ_BYTES = 1 << 62  # reads forever while detached
        asyncio.run(series(args.runs, args.seconds, "flow control off (ring + batching only)"))
        terminal_sessions.DETACHED_READ_BYTES = limit


if __name__ == "__main__":
    main()
