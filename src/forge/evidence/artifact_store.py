"""Where a scenario's four result files live: the artifact-store interface and its default.

The scoreboard writes results, and its routes, the leaderboard and `forge artifacts fetch`
read them, only through an `ArtifactStore`, chosen by `FORGE_ARTIFACT_STORE`:

* `filesystem` (default): exactly `<STORAGE_ROOT>/scenarios/<scenario_id>/results/`, the
  runbook's layout (`FilesystemArtifactStore`, below);
* `jetstream`: the JetStream Object Store bucket `forge-artifacts`, for installations whose
  services run on several machines (the scoreboard's implementation lives beside its bus
  connection, `forge.services.common.artifact_stores`).

Both keep results immutable: writing the same score and bundle again is a no-op, anything
different is a `ResultConflict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from forge.evidence.artifacts import (
    Artifacts,
    ResultsWritten,
    read_results,
    results_dir,
    write_results,
)
from forge_verify.score import SCENARIO_ID_RE
from forge_verify.verdict import SCORE_NAME

ARTIFACT_STORES = ("filesystem", "jetstream")


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


class FilesystemArtifactStore:
    """Results under `<storage_root>/scenarios/<scenario_id>/results/` (the default)."""

    def __init__(self, storage_root: Path) -> None:
        self.storage_root = Path(storage_root)

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
        try:
            return (results_dir(self.storage_root, scenario_id) / SCORE_NAME).read_bytes()
        except OSError:
            return None


__all__ = ["ARTIFACT_STORES", "ArtifactStore", "FilesystemArtifactStore"]
