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
