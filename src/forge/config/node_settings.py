"""Lab node settings: who this orchestrator is, where it is reached, how much it may hold.

Validators for the `FORGE_NODE_*` variables (issue 15 item 3). Every default keeps a
one-machine installation exactly as before: one node, `node-1`, reached at ORCHESTRATOR_URL.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

NODE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}\Z")
DEFAULT_NODE_ID = "node-1"
DEFAULT_CAPACITY_LABS = 200  # what one 2-core machine kept alive in bench/runtime.py
DEFAULT_HEARTBEAT_S = 2.0
DEFAULT_GRACE_S = 15.0
# Template memory limits are ceilings (an idle bench lab uses ~8 MiB of its 512 MiB), so a
# node admits by limit with this overcommit of its physical memory unless told otherwise.
MEMORY_OVERCOMMIT = 4


class NodeSettingError(ValueError):
    """A FORGE_NODE_* value is invalid; the message names the variable, never the value."""


def machine_memory_mb() -> int:
    """Physical memory of this machine in MiB (sysconf), 4096 when it cannot be read."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4096
    return max(64, pages * size // (1024 * 1024))


def default_memory_mb() -> int:
    """FORGE_NODE_CAPACITY_MEMORY_MB when unset: the machine's memory times the overcommit."""
    return machine_memory_mb() * MEMORY_OVERCOMMIT


def node_id(raw: object) -> str:
    """FORGE_NODE_ID: 1-32 of a-z 0-9 -, starting with a letter or digit."""
    text = str(raw).strip()
    if not NODE_ID_RE.fullmatch(text):
        raise NodeSettingError("FORGE_NODE_ID must be 1-32 characters of a-z, 0-9 and -, "
                               "starting with a letter or digit (e.g. node-2)")
    return text


def whole(var: str, low: int, high: int) -> Callable[[object], int]:
    """A validator for a whole number within [low, high] (capacities)."""
    def check(raw: object) -> int:
        text = str(raw).strip()
        if not text.isdecimal() or not low <= int(text) <= high:
            raise NodeSettingError(f"{var} must be a whole number from {low} to {high}")
        return int(text)
    return check


def seconds(var: str, low: float, high: float) -> Callable[[object], float]:
    """A validator for a number of seconds within [low, high]."""
    def check(raw: object) -> float:
        try:
            value = float(str(raw))
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise NodeSettingError(f"{var} must be a number of seconds between {low:g} and "
                                   f"{high:g}")
        return value
    return check
