"""`forge artifacts fetch` on the default filesystem store: the four files land in DIR
byte for byte and verify; a bad id, an unknown scenario or a symlink planted in DIR is a
clear error with a non-zero exit, and nothing is written outside DIR."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.evidence.artifact_store import FilesystemArtifactStore
from forge.evidence.artifacts import Artifacts, results_dir
from forge_verify import verify_paths

from .fetch_cli import app, stored
from .sample import SCENARIO_ID


@pytest.fixture
def store(artifacts: Artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> FilesystemArtifactStore:
    return stored(artifacts, tmp_path / "storage", monkeypatch)


def test_fetch_writes_the_four_files_into_dir(store: FilesystemArtifactStore,
                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["artifacts", "fetch", SCENARIO_ID, "--out", str(out)])
    assert result.exit_code == 0, result.output
    stored = store.read(SCENARIO_ID)
    assert stored is not None
    assert {p.name: p.read_bytes() for p in out.iterdir()} == stored
    assert verify_paths(out / "score.json", out / "evidence.tar.zst", out / "verdict.sig",
                        out / "verdict.pub").ok
    assert store.score_stamps().keys() == {SCENARIO_ID}
    assert store.read_score(SCENARIO_ID) == stored["score.json"]
    for name, data in stored.items():  # one file alone, as a download reads it
        assert store.read_file(SCENARIO_ID, name) == data
    (results_dir(store.storage_root, SCENARIO_ID) / "notes.txt").write_text("x")
    for name in ("evidence.tar.gz", "notes.txt", "../results/score.json"):
        assert store.read_file(SCENARIO_ID, name) is None
    assert results_dir(store.storage_root, SCENARIO_ID).is_dir()


def test_fetch_refuses_bad_ids_unknown_scenarios_and_planted_links(
        store: FilesystemArtifactStore, tmp_path: Path) -> None:
    runner = CliRunner()
    for bad in ("../../etc", "SCN-0000000000000001", "scn-00000000000000012"):
        result = runner.invoke(app, ["artifacts", "fetch", bad, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and "scenario_id:" in result.output
    unknown = runner.invoke(app, ["artifacts", "fetch", "scn-" + "f" * 16,
                                  "--out", str(tmp_path / "x")])
    assert unknown.exit_code == 1 and "no results for scn-ffffffffffffffff" in unknown.output
    assert not (tmp_path / "x").exists()
    # A symlink planted in DIR is refused, never followed out of DIR.
    out, outside = tmp_path / "planted", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_text("keep me")
    (out / "score.json").symlink_to(outside)
    planted = runner.invoke(app, ["artifacts", "fetch", SCENARIO_ID, "--out", str(out)])
    assert planted.exit_code == 1 and "cannot write into" in planted.output
    assert outside.read_text() == "keep me"
