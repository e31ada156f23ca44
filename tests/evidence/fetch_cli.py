"""`forge artifacts` as the CLI registers it, over a filesystem store of one sample
scenario, for the tests of `forge artifacts fetch` (tests/evidence/test_artifact_fetch.py,
tests/security/test_artifact_fetch_planted_storage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from forge.cli import artifacts as artifacts_cli
from forge.evidence.artifact_store import FilesystemArtifactStore
from forge.evidence.artifacts import Artifacts

app = typer.Typer()
app.add_typer(artifacts_cli.app, name="artifacts")  # as `forge` registers it


def stored(artifacts: Artifacts, root: Path,
           monkeypatch: pytest.MonkeyPatch) -> FilesystemArtifactStore:
    """`artifacts` written to a filesystem store at storage root `root`, which the CLI (in
    dev, with the default store) is set to read."""
    monkeypatch.setenv("STORAGE_ROOT", str(root))
    monkeypatch.setenv("FORGE_ENV", "dev")
    monkeypatch.delenv("FORGE_ARTIFACT_STORE", raising=False)
    made = FilesystemArtifactStore(root)
    assert made.write(artifacts).created
    return made
