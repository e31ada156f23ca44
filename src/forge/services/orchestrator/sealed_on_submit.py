"""A submitted lab's terminal seal, kept on the node's disk as well as in its memory.

The terminal seal of a Submit (``terminal.seal_for_submit``) lived in the node's memory
only (``TerminalSlots``): a node restarted while the submit waited behind other gradings
(an upgrade, a crash) forgot it, and the lab, still ``running``, opened a new shell. The
learner then typed answers after a Submit the dashboard judges on time. So the seal is also
an empty file in the scenario's folder, written before the terminals close, and a terminal
request for a lab with that file is sealed again on the spot. It goes with the lab's raw
evidence once the lab is graded (`artifact_store.RAW_EVIDENCE`).
"""

from __future__ import annotations

from pathlib import Path

from forge.durable import replace_file
from forge.evidence.artifact_store import SUBMITTED_FILE
from forge.scenario_paths import scenario_dir

SUBMIT_REASON = "submitted"  # why the terminals closed, in the learner's message


def keep_submitted(storage_root: Path, scenario_id: str) -> None:
    """Record (synced: a power cut restarts the node too) that the lab was submitted."""
    folder = scenario_dir(storage_root, scenario_id)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    replace_file(folder / SUBMITTED_FILE, b"")


def was_submitted(storage_root: Path, scenario_id: str) -> bool:
    """Whether the lab's Submit sealed its terminals on this node, before a restart too."""
    return (scenario_dir(storage_root, scenario_id) / SUBMITTED_FILE).exists()
