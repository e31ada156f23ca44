"""A grading the store forgot: the state store was restored from a backup made while the
scenario was being graded, after which it was graded, published and completed.

The store then says ``grading`` with no lab and no stored result (the lab was torn down and
the raw result discarded once published), which otherwise reads as a lab lost in a crash:
the scenario was failed ("the lab was lost during grading") although its learner holds a
signed verdict and its audit log records it completed. The node's audit log is written
with every move, so it knows: its last move of the scenario is to ``completed``. The same
holds for a backup made while the lab ran (restart reconciliation failed it as "lost
while the orchestrator was down").
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


Move = tuple[str, str, str]  # (from, to, reason)


def logged_completion(storage_root: Path, scenario_id: str, current: str) -> list[Move]:
    """The moves the scenario's audit log records after its last move into ``current``
    (the state its store row says), when they end in ``completed``; [] otherwise (no log,
    the log agrees with the store, or it ends otherwise)."""
    try:
        text = scenario_log(storage_root, scenario_id).read_bytes().decode("utf-8", "replace")
    except OSError:
        return []
    moves: list[Move] = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("event") != "scenario.state" \
                or not isinstance(data := entry.get("data"), dict):
            continue
        moves.append((str(data.get("from")), str(data.get("to")), str(data.get("reason", ""))))
    since = [i for i, move in enumerate(moves) if move[1] == current]
    after = moves[since[-1] + 1:] if since else []
    if not after or after[-1][1] != states.COMPLETED or after[0][0] != current:
        return []
    return after


async def complete_as_logged(state: OrchestratorState, scenario_id: str,
                             moves: list[Move]) -> str:
    """Record again the moves the audit log holds (the log keeps its entries), ending in
    ``completed``, and say the scenario ended, so the learner's slot is freed; the
    scenario's state after."""
    log.warning("scenario %s: the store says %s, but its audit log records it graded and "
                "completed (%s): the store was restored from an older backup; recorded "
                "completed again", scenario_id, moves[0][0], moves[-1][2])
    try:
        await state.announce_ended(scenario_id, states.COMPLETED)
    except BusUnavailable:
        return moves[0][0]  # the reaper or the next start tries again
    try:
        for before, after, reason in moves:
            await state.blocking(lambda b=before, a=after, r=reason: record_move(
                state.ctx.db, scenario_id, a, r, expected=b))
    except IllegalTransition:  # moved by someone else meanwhile
        return str((await state.read(load, state.ctx.db, scenario_id)).state)
    return states.COMPLETED
