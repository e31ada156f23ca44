"""A grading the store forgot: the state store was restored from a backup made while the
scenario was being graded, after which it was graded, published and completed.

The store then says ``grading`` with no lab and no stored result (the lab was torn down and
the raw result discarded once published), which otherwise reads as a lab lost in a crash:
the scenario was failed ("the lab was lost during grading") although its learner holds a
signed verdict and its audit log records it completed. The node's audit log is written
with every move, so it knows: its last move of the scenario is to ``completed``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from forge.audit.log import scenario_log
from forge.bus import BusUnavailable
from forge.lifecycle import states
from forge.lifecycle.states import IllegalTransition
from forge.lifecycle.store import load, record_move
from forge.services.orchestrator.state import OrchestratorState

log = logging.getLogger("forge.orchestrator.complete")


def logged_completion(storage_root: Path, scenario_id: str) -> str | None:
    """The reason of the scenario's last move in its audit log when that move took it from
    ``grading`` to ``completed``; None otherwise (no log, or its last move is another)."""
    try:
        text = scenario_log(storage_root, scenario_id).read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    last: dict[str, object] | None = None
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "scenario.state" \
                and isinstance(entry.get("data"), dict):
            last = entry["data"]
    if last is None or last.get("from") != states.GRADING or last.get("to") != states.COMPLETED:
        return None
    reason = last.get("reason")
    return reason if isinstance(reason, str) else "graded"


async def complete_as_logged(state: OrchestratorState, scenario_id: str, reason: str) -> str:
    """Record again the completion the audit log holds (the log keeps its one entry), and
    say the scenario ended, so the learner's slot is freed; the scenario's state after."""
    log.warning("scenario %s: the store says grading, but its audit log records it graded "
                "and completed (%s): the store was restored from an older backup; recorded "
                "completed again", scenario_id, reason)
    try:
        await state.announce_ended(scenario_id, states.COMPLETED)
    except BusUnavailable:
        return states.GRADING  # the reaper or the next start tries again
    try:
        await state.blocking(lambda: record_move(state.ctx.db, scenario_id, states.COMPLETED,
                                                 reason, expected=states.GRADING))
    except IllegalTransition:  # ended by someone else meanwhile
        return str((await state.read(load, state.ctx.db, scenario_id)).state)
    return states.COMPLETED
