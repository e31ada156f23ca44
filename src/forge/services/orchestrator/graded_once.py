"""A lab's grading, kept before its audit entry, so that a grading cut short after that
entry (the disk filled as the evidence pack or the result was written, a kill -9) is
finished from what it recorded instead of being graded a second time.

The scoreboard scores a completion only when its outputs are the ones the scenario's audit
log records at its (first) `scenario.completed` entry. A second grading of the same lab
appended another entry whose outputs (a curl's `Date:` header, a ping's times) differ from
the first, while the log shipped ends at the first: the learner's verdict was refused as
`evidence_mismatch`, a security event, and no reprocess could score it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from forge.audit.log import AuditLog
from forge.bus.contracts import ContractError, ScenarioCompletedV1, decode_as, payload
from forge.bus.subjects import SCENARIO_COMPLETED
from forge.durable import replace_file
from forge.evidence.artifact_store import EVIDENCE_DIR, GRADED_FILE
from forge_verify.canonical import CanonicalJSONError, loads


def evidence_hashes(directory: Path) -> dict[str, str]:
    """sha256 of each captured output in the scenario's evidence folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.is_file()}


def keep_grading(folder: Path, event: ScenarioCompletedV1) -> None:
    """Keep a grading's completion (before its audit entry is written): the node's alone
    (0600), like the stored result, since it carries the lab's variables and tokens."""
    replace_file(folder / GRADED_FILE,
                 json.dumps(payload(event), sort_keys=True).encode())


def kept_grading(folder: Path, slog: AuditLog) -> ScenarioCompletedV1 | None:
    """The completion an earlier grading of this lab kept, when its audit log (`slog`,
    through its `scenario.completed` entry) records that grading's outputs and the
    evidence folder still holds them; None: the lab is graded (again). The log is read
    only when a kept completion exists (not on every first grading)."""
    path = folder / GRADED_FILE
    if not path.exists() or (audit := slog.read_through("scenario.completed")) is None:
        return None
    try:
        event = decode_as(ScenarioCompletedV1, SCENARIO_COMPLETED, path.read_bytes())
        entry = loads(audit.splitlines()[-1])
        held = evidence_hashes(folder / EVIDENCE_DIR)
    except (ContractError, CanonicalJSONError, OSError, IndexError):
        return None
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, dict) or data.get("evidence") != event.evidence:
        return None  # kept by a grading that never wrote its entry: not the one recorded
    return event if held == event.evidence else None


__all__ = ["evidence_hashes", "keep_grading", "kept_grading"]
