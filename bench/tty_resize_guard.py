"""What keeping a terminal's latest resize costs the node: CPU per MiB a PTY reads.

After a resize, `LocalTty` checks the terminal's size (one TIOCGWINSZ) at every read and
write, to undo a shell's stale write-back of an older size (runtime/local/winsize.py). This
reads a PTY running `yes` flat out (the worst case: the most reads per second) for
`--seconds`, `--runs` times, with no resize (nothing checked) and after one (checked at every
read), and prints the median CPU milliseconds (user + system of this process) per MiB read
and per read, their ratio, and the CPU of one check alone. The PTY's program runs on this
machine (no lab, no root).

    .venv/bin/python bench/tty_resize_guard.py [--runs 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import time

from forge.runtime.local.tty import LocalTty
from forge.runtime.local.winsize import SizeKeeper

PRINTER = ["/bin/sh", "-c", "exec yes"]


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def one_run(seconds: float, resized: bool) -> tuple[float, float]:
    """CPU ms per MiB and per read while reading `yes` for `seconds`."""
    holder: list[LocalTty] = []

    def kill_tree() -> None:
        for tty in holder:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(tty._proc.pid, signal.SIGKILL)

    tty = LocalTty(PRINTER, {"PATH": "/usr/bin:/bin"}, 24, 80, kill_tree, lambda _t: None)
    holder.append(tty)
    try:
        if resized:
            tty.resize(40, 120)
        size = reads = 0
        start_cpu, end = _cpu(), time.monotonic() + seconds
        while time.monotonic() < end:
            size += len(await tty.read(65536))
            reads += 1
        used_ms = (_cpu() - start_cpu) * 1000
    finally:
        tty.close()
    return used_ms / (size / (1 << 20)), used_ms / reads


def check_alone(calls: int = 100_000) -> float:
    """CPU µs of one armed size check (the PTY's TIOCGWINSZ and the comparison)."""
    master, slave = os.openpty()
    try:
        keeper = SizeKeeper()
        keeper.resize(master, 40, 120)
        start = _cpu()
        for _ in range(calls):
            keeper.check(master)
        return (_cpu() - start) * 1e6 / calls
    finally:
        os.close(master)
        os.close(slave)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(args.runs):  # interleaved, so a change in the machine's load hits both
        for resized in (False, True):
            results[resized].append(asyncio.run(one_run(args.seconds, resized)))
    medians = {}
    for resized, runs in results.items():
        per_mib = statistics.median(r[0] for r in runs)
        per_read = statistics.median(r[1] for r in runs)
        medians[resized] = per_mib
        label = "after a resize (size checked per read)" if resized else "no resize"
        print(f"{label}: {per_mib:.2f} ms CPU per MiB, {per_read * 1000:.1f} µs per read "
              f"(median of {args.runs} x {args.seconds:g} s)")
    print(f"ratio checked / unchecked: {medians[True] / medians[False]:.3f}")
    alone = statistics.median(check_alone() for _ in range(args.runs))
    print(f"one check alone: {alone:.2f} µs CPU (median of {args.runs} x 100000)")


if __name__ == "__main__":
    main()
