"""Scenarios whose labs were destroyed with the platform stopped (`forge up
--teardown-labs`): ended, with that reason, and their quota slots freed, at once.

The services are down by then, so no node announces the end and nobody frees the slot:
the rows stayed ``running`` with their slots held while the platform was down, and the
next start failed them as "lost while the orchestrator was down", which was not what
happened. Here each one moves (under its row lock, from the state read) to ``failed``
with the operator's reason, and its slot is released in the same pass.
"""

from __future__ import annotations

from pathlib import Path

from forge.lifecycle import states
from forge.lifecycle.states import IllegalTransition
from forge.lifecycle.store import ScenarioNotFound, load, move
from forge.quotas.limiter import release
from forge.store.db import Database
from forge_verify.score import SCENARIO_ID_RE

TORN_DOWN = "its lab was destroyed when the platform was stopped (forge up --teardown-labs)"


def end_torn_down(db: Database, storage_root: Path, lab_ids: list[str]) -> list[str]:
    """End the live scenarios of ``lab_ids`` as ``failed`` (``TORN_DOWN``) and free their
    slots; returns those ended. A lab that is no scenario's (a warm pool's) is skipped,
    as is a scenario already final or moved meanwhile."""
    ended: list[str] = []
    for lab_id in lab_ids:
        if SCENARIO_ID_RE.fullmatch(lab_id) is None:
            continue
        try:
            row = load(db, lab_id)
            if row.state in states.TERMINAL:
                continue
            move(db, storage_root, lab_id, states.FAILED, TORN_DOWN, expected=row.state)
        except (ScenarioNotFound, IllegalTransition):
            continue
        release(db, lab_id)
        ended.append(lab_id)
    return ended
