"""Do the state store and the results folders agree? (`forge artifacts check`)

A backup whose state store and storage root were copied at different moments (PostgreSQL's
`pg_dump` while the stack runs, a storage root copied while a verdict was being published)
can restore a scenario the store records as scored (`finalized_audits`: its verdict was
signed and audited) whose signed files are not in `scenarios/<id>/results/` — the learner's
lab shows graded, its score answers 404 — or signed files of a scenario the store does not
know or does not record as completed. Nothing at start sees it (a results folder removed by
retention looks the same), so the operator checks after a restore. Results removed by
retention (`retention.deleted` in the global audit log) are not a mismatch. A store with no
scenario beside a root with no results folder is nothing checked (`Compared.empty`), never
"they agree": a mistyped STORAGE_ROOT makes a new, empty one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from forge.audit.log import global_log
from forge.evidence.artifact_store import FilesystemArtifactStore
from forge.evidence.artifacts import PUB_NAME, SIG_NAME, results_dir
from forge.lifecycle import states
from forge.store.db import Database
from forge.store.models import FinalizedAudit, Scenario
from forge_verify.bundle import BUNDLE_NAMES
from forge_verify.verdict import SCORE_NAME


@dataclass(frozen=True)
class Mismatch:
    """One scenario on which the store and its results folder disagree."""

    scenario_id: str
    problem: str  # "files_missing" | "files_incomplete" | "not_recorded"
    detail: str


def retention_deleted(storage_root: Path) -> set[str]:
    """Scenario ids whose results retention deleted (the global audit log says so)."""
    deleted: set[str] = set()
    try:
        for line in global_log(storage_root).lines():  # a line at a time: it never ends
            if b'"retention.deleted"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == "retention.deleted" \
                    and isinstance(data := entry.get("data"), dict):
                deleted.add(str(data.get("scenario_id")))
    except OSError:
        return set()
    return deleted


def _incomplete(storage_root: Path, scenario_id: str) -> list[str]:
    """The signed files a results folder lacks (empty when it is whole)."""
    folder = results_dir(storage_root, scenario_id)
    lacking = [n for n in (SCORE_NAME, SIG_NAME, PUB_NAME) if not (folder / n).is_file()]
    if not any((folder / n).is_file() for n in BUNDLE_NAMES.values()):
        lacking.append("evidence bundle")
    return lacking


@dataclass(frozen=True)
class Compared:
    """What was compared: the mismatches, and how many scenarios each side holds."""

    mismatches: list[Mismatch]
    scenarios: int  # rows of the store
    folders: int  # results folders of the storage root

    @property
    def empty(self) -> bool:
        """Nothing on either side: no restored installation was checked."""
        return not self.scenarios and not self.folders


def results_mismatches(db: Database, storage_root: Path) -> Compared:
    """Every scenario on which the store and the results folders disagree, by id."""
    with db.session() as sess:
        scored = set(sess.execute(select(FinalizedAudit.scenario_id)).scalars())
        rows = {sid: (state, reason) for sid, state, reason in sess.execute(
            select(Scenario.scenario_id, Scenario.state, Scenario.state_reason))}
    present = set(FilesystemArtifactStore(storage_root).retention_ids())
    found: list[Mismatch] = []
    for sid in sorted(scored - present - retention_deleted(storage_root)):
        found.append(Mismatch(sid, "files_missing", "the store records its verdict as signed "
                              "and audited, but scenarios/" + sid + "/results/ is not there"))
    for sid in sorted(present):
        if lacking := _incomplete(storage_root, sid):
            found.append(Mismatch(sid, "files_incomplete", "results/ lacks "
                                  + ", ".join(lacking)))
        elif sid not in rows:
            found.append(Mismatch(sid, "not_recorded", "signed results, but the store has no "
                                  "such scenario"))
        elif rows[sid][0] != states.COMPLETED and sid not in scored:
            found.append(Mismatch(sid, "not_recorded", "signed results, but the store says "
                                  f"{rows[sid][0]} ({rows[sid][1]})"))
    return Compared(sorted(found, key=lambda m: (m.scenario_id, m.problem)), len(rows),
                    len(present))
