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

from forge.evidence.artifact_store import COMPLETION_FILE, discard_raw_evidence
from forge.lifecycle import states
from forge.lifecycle.states import IllegalTransition
from forge.lifecycle.store import ScenarioNotFound, load, move
from forge.quotas.limiter import release
from forge.runtime.recording import discard_recordings
from forge.scenario_paths import scenario_dir
from forge.store.db import Database
from forge_verify.score import SCENARIO_ID_RE

TORN_DOWN = "its lab was destroyed when the platform was stopped (forge up --teardown-labs)"


def end_torn_down(db: Database, storage_root: Path, lab_ids: list[str]) -> list[str]:
    """End the live scenarios of ``lab_ids`` as ``failed`` (``TORN_DOWN``), free their
    slots and remove what the node kept of them (``discard_scenario_files``); returns
    those ended. Skipped: a lab that is no scenario's (a warm pool's), a scenario already
    final or moved meanwhile, and one whose grading result is stored (the next start
    publishes it: the learner's work was graded)."""
    ended: list[str] = []
    for lab_id in lab_ids:
        if SCENARIO_ID_RE.fullmatch(lab_id) is None:
            continue
        try:
            row = load(db, lab_id)
            if row.state in states.TERMINAL or (
                    row.state == states.GRADING
                    and (scenario_dir(storage_root, lab_id) / COMPLETION_FILE).exists()):
                continue
            move(db, storage_root, lab_id, states.FAILED, TORN_DOWN, expected=row.state)
        except (ScenarioNotFound, IllegalTransition):
            continue
        release(db, lab_id)
        discard_scenario_files(storage_root, lab_id)
        ended.append(lab_id)
    return ended


def discard_scenario_files(storage_root: Path, scenario_id: str) -> None:
    """Remove what a node kept of a scenario that ended without a result it will publish:
    its terminal recordings and its raw evidence (a stored result included). Nothing
    else would: a final scenario is never resumed, and retention removes results."""
    discard_recordings(storage_root, scenario_id)
    discard_raw_evidence(scenario_dir(storage_root, scenario_id))
