"""The machine's process table as any local user reads it (no hidepid here)."""

from __future__ import annotations

import contextlib
import os


def machine_cmdlines() -> dict[int, bytes]:
    """Every process's command line (NUL-separated arguments), by pid."""
    out: dict[int, bytes] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{name}/cmdline", "rb") as fh:
                out[int(name)] = fh.read()
    return out


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan reaped late still counts as gone;
    so does one reaped between opening its stat file and reading it, ESRCH)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
