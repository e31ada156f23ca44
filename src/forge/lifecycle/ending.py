"""A scenario's end that was asked for before its lab was torn down, kept until recorded.

A delete (or an expiry) tears the lab down first and moves the row after, so the slot is
freed only once the lab is gone. An orchestrator killed between the two left the row
``running`` beside half a lab, and the next start failed it as "damaged while the
orchestrator was down": the learner who deleted it saw a failure that did not happen.
The end asked for is written beside the scenario's audit log before the teardown starts,
and a restart finishes that end instead (``resume_after_restart``).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from forge.durable import replace_file
from forge.lifecycle import states
from forge.scenario_paths import scenario_dir

ENDING_FILE = "ending.json"
MAX_BYTES = 4096  # a target and a reason of at most MAX_REASON characters
MAX_REASON = 500
ENDS = frozenset({states.DELETED, states.EXPIRED, states.FAILED})


def record_ending(storage_root: Path, scenario_id: str, target: str, reason: str) -> None:
    """Keep ``target`` and ``reason`` as the end under way (not synced: what it guards
    against is the orchestrator's process dying, not the machine)."""
    if target not in ENDS:
        raise ValueError(f"not an end a teardown finishes with: {target!r}")
    folder = scenario_dir(storage_root, scenario_id)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps({"target": target, "reason": reason[:MAX_REASON]}).encode()
    replace_file(folder / ENDING_FILE, data, sync=False)


def ending_of(storage_root: Path, scenario_id: str) -> tuple[str, str] | None:
    """The end under way for a scenario: (target, reason), or None when none was kept or
    what is there is not one (then the usual recovery applies)."""
    path = scenario_dir(storage_root, scenario_id) / ENDING_FILE
    try:
        with path.open("rb") as fh:
            data = json.loads(fh.read(MAX_BYTES))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested far too deep
        return None
    if not isinstance(data, dict):
        return None
    target, reason = data.get("target"), data.get("reason")
    if target not in ENDS or not isinstance(reason, str):
        return None
    return str(target), reason[:MAX_REASON]


def forget_ending(storage_root: Path, scenario_id: str) -> None:
    """Drop the kept end once the scenario's row records it (a file that cannot be removed
    is left: the row is final, and a kept end is read only for a live row)."""
    with contextlib.suppress(OSError):
        (scenario_dir(storage_root, scenario_id) / ENDING_FILE).unlink()
