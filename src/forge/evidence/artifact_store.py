"""Where a scenario's four result files live: the artifact-store interface and its default.

The scoreboard writes results, and its routes, the leaderboard and `forge artifacts fetch`
read them, only through an `ArtifactStore`, chosen by `FORGE_ARTIFACT_STORE`:

* `filesystem` (default): exactly `<STORAGE_ROOT>/scenarios/<scenario_id>/results/`, the
  runbook's layout (`FilesystemArtifactStore`, below);
* `jetstream`: the JetStream Object Store bucket `forge-artifacts`, for installations whose
  services run on several machines (the scoreboard's implementation lives beside its bus
  connection, `forge.services.common.artifact_stores`).

Both keep results immutable: writing the same score and bundle again is a no-op, anything
different is a `ResultConflict`. Retention (`forge.retention.cleanup`) lists and deletes
results through the same interface, so it works on whichever store the install uses.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from forge.durable import replace_file, tmp_name
from forge.evidence.artifacts import (
    PUB_NAME,
    RESULT_FILE_NAMES,
    SIG_NAME,
    Artifacts,
    ResultsWritten,
    read_results,
    results_dir,
    write_results,
)
from forge.grading.live_record import record_path
from forge.scenario_paths import scenario_dir
from forge_verify.score import SCENARIO_ID_RE
from forge_verify.verdict import SCORE_NAME

ARTIFACT_STORES = ("filesystem", "jetstream")
TOMBSTONE_PREFIX = ".deleting-"
# A lab node's raw evidence of one scenario: the evidence pack it ships through the Object
# Store (when too big to ride inline), the captured outputs and the stored completion event.
PACK_FILE = "evidence.pack"
EVIDENCE_DIR = "evidence"
COMPLETION_FILE = "completion.json"
# A grading's completion kept before its audit entry (`orchestrator.graded_once`).
GRADED_FILE = "graded.json"
# A Submit's terminal seal kept on disk (`orchestrator.sealed_on_submit`): of no use once
# the lab is graded, and a crash while it was written left its temporary file behind.
SUBMITTED_FILE = "terminals.submitted"
# The node's terminal recordings (`forge.runtime.recording`) and the live checks' kept
# outcomes (`forge.grading.live_record`) go with the raw evidence too, and so does what a
# crash left half-written of the files replaced whole (`forge.durable`).
_LIVE_RECORD = record_path(Path(EVIDENCE_DIR)).name
SIGNATURE_NAMES = (SIG_NAME, PUB_NAME)  # what `forge keys resign` replaces, nothing else
RAW_EVIDENCE = (PACK_FILE, tmp_name(PACK_FILE), EVIDENCE_DIR, COMPLETION_FILE,
                tmp_name(COMPLETION_FILE), GRADED_FILE, tmp_name(GRADED_FILE), "recordings",
                _LIVE_RECORD, tmp_name(_LIVE_RECORD), SUBMITTED_FILE, tmp_name(SUBMITTED_FILE))


def discard_raw_evidence(scenario_dir: Path) -> None:
    """Remove a scenario's raw evidence (RAW_EVIDENCE), whatever of it exists; the node
    calls it once its completion is on the bus, retention with the expired results."""
    for name in RAW_EVIDENCE:
        path = scenario_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def delete_results(scenario_dir: Path) -> None:
    """Remove a scenario's results and raw evidence; the results vanish in one rename."""
    tomb = scenario_dir / f"{TOMBSTONE_PREFIX}{uuid.uuid4().hex}"
    os.rename(scenario_dir / "results", tomb)
    discard_raw_evidence(scenario_dir)
    shutil.rmtree(tomb)


class ArtifactStore(Protocol):
    """Writes and reads the result files of scenarios."""

    def write(self, artifacts: Artifacts) -> ResultsWritten:
        """Store the four files once (no-op if identical, ResultConflict if different)."""

    def read(self, scenario_id: str) -> dict[str, bytes] | None:
        """The stored files by name, or None when the scenario has no results."""

    def score_stamps(self) -> dict[str, object]:
        """scenario id -> a value that changes when its score.json changes (for caches)."""

    def read_score(self, scenario_id: str) -> bytes | None:
        """The scenario's score.json, or None."""

    def read_file(self, scenario_id: str, name: str) -> bytes | None:
        """One of the scenario's result files (RESULT_FILE_NAMES) alone, or None."""

    def retention_ids(self) -> list[str]:
        """Ids of the scenarios with stored results, for retention to judge."""

    def interrupted_deletes(self) -> list[str]:
        """Ids whose delete was cut short after their results became unreadable."""

    def delete(self, scenario_id: str) -> None:
        """Remove the scenario's results and raw evidence; raises OSError or BusError when
        that fails (what is left is finished by the next call)."""

    def replace_signature_file(self, scenario_id: str, name: str, data: bytes) -> bool:
        """Replace verdict.sig or verdict.pub (`forge keys resign`), nothing else; False
        when the scenario has no results."""


class FilesystemArtifactStore:
    """Results under `<storage_root>/scenarios/<scenario_id>/results/` (the default)."""

    def __init__(self, storage_root: Path,
                 remover: Callable[[Path], None] = delete_results) -> None:
        self.storage_root = Path(storage_root)
        self.remover = remover

    def write(self, artifacts: Artifacts) -> ResultsWritten:
        """Write atomically (a temp directory renamed into place)."""
        return write_results(self.storage_root, artifacts)

    def read(self, scenario_id: str) -> dict[str, bytes] | None:
        """The files of `results/`, or None."""
        return read_results(self.storage_root, scenario_id)

    def score_stamps(self) -> dict[str, object]:
        """(mtime, size) of each score.json, by scenario id."""
        stamps: dict[str, object] = {}
        try:
            entries = list((self.storage_root / "scenarios").iterdir())
        except OSError:
            return stamps
        for entry in entries:
            if SCENARIO_ID_RE.fullmatch(entry.name) is None:
                continue
            try:
                st = (entry / "results" / SCORE_NAME).stat()
            except OSError:
                continue
            stamps[entry.name] = (st.st_mtime_ns, st.st_size)
        return stamps

    def read_score(self, scenario_id: str) -> bytes | None:
        """score.json's bytes, or None."""
        return self.read_file(scenario_id, SCORE_NAME)

    def read_file(self, scenario_id: str, name: str) -> bytes | None:
        """One file of `results/` (a result file's name only), or None."""
        if name not in RESULT_FILE_NAMES:
            return None
        try:
            return (results_dir(self.storage_root, scenario_id) / name).read_bytes()
        except OSError:
            return None


    def retention_ids(self) -> list[str]:
        """Every `scenarios/<id>/` holding a `results/` directory."""
        try:
            entries = sorted((self.storage_root / "scenarios").iterdir())
        except FileNotFoundError:
            return []
        return [e.name for e in entries
                if SCENARIO_ID_RE.fullmatch(e.name) and (e / "results").is_dir()]

    def interrupted_deletes(self) -> list[str]:
        """None: a tombstone left by a cut-short delete is swept before the next delete."""
        return []

    def delete(self, scenario_id: str) -> None:
        """Sweep old tombstones, then rename `results/` away and remove the raw evidence."""
        folder = scenario_dir(self.storage_root, scenario_id)
        for tomb in folder.glob(TOMBSTONE_PREFIX + "*"):
            shutil.rmtree(tomb, ignore_errors=True)
        self.remover(folder)

    def replace_signature_file(self, scenario_id: str, name: str, data: bytes) -> bool:
        """Replace `results/<name>` whole, synced (`durable.replace_file`, mode 0640 as the
        result files are)."""
        if name not in SIGNATURE_NAMES:
            raise ValueError(f"{name}: only {' and '.join(SIGNATURE_NAMES)} are replaced")
        results = results_dir(self.storage_root, scenario_id)
        if not (results / SCORE_NAME).is_file():
            return False
        replace_file(results / name, data, mode=0o640)
        return True


__all__ = ["ARTIFACT_STORES", "COMPLETION_FILE", "EVIDENCE_DIR", "PACK_FILE", "RAW_EVIDENCE",
           "SIGNATURE_NAMES", "TOMBSTONE_PREFIX", "ArtifactStore", "FilesystemArtifactStore",
           "delete_results", "discard_raw_evidence"]
