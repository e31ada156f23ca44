"""Attack: as another local user, make `storage` (or a link at any folder below it) in a
directory where an operator runs `forge artifacts fetch SCENARIO_ID` without `--out` (say
/tmp), so the result files are written where you choose.

Before: the default DIR `storage/scenarios/<id>/results` was made with
`mkdir(parents=True)`, following links and taking any folder as it found it: a link at
`results` led root to write the four files into a folder of the attacker's choosing
(replacing files of those names there), and an attacker's `storage` let them swap the
files once written, so the operator's verify ran on files of theirs. Now each folder is
made one at a time and must be a real folder of this user (or root) no other user may
write; otherwise nothing is written and the command exits 1 naming the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.evidence.artifact_store import FilesystemArtifactStore

from ..evidence.fetch_cli import app, stored
from ..evidence.sample import SCENARIO_ID, build

NOBODY = 65534


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FilesystemArtifactStore:
    return stored(build(tmp_path / "work"), tmp_path / "real-storage", monkeypatch)


def _shared_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path / "shared"
    cwd.mkdir()
    os.chmod(cwd, 0o1777)  # noqa: S103 - a /tmp-like folder, the situation under test
    monkeypatch.chdir(cwd)
    return cwd


def _of_nobody(*paths: Path) -> None:
    for path in paths:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


@pytest.mark.root
@pytest.mark.usefixtures("store")
def test_a_link_planted_below_storage_leads_no_file_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = _shared_cwd(tmp_path, monkeypatch)
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    (chosen / "score.json").write_text("theirs")
    folder = cwd / "storage" / "scenarios" / SCENARIO_ID
    folder.mkdir(parents=True)
    (folder / "results").symlink_to(chosen)
    _of_nobody(cwd / "storage", cwd / "storage" / "scenarios", folder, folder / "results")
    result = CliRunner().invoke(app, ["artifacts", "fetch", SCENARIO_ID])
    assert result.exit_code == 1, result.output
    assert "error: refusing to write into storage/scenarios" in result.output
    assert "nothing was written" in result.output
    assert sorted(p.name for p in chosen.iterdir()) == ["score.json"]
    assert (chosen / "score.json").read_text() == "theirs"


@pytest.mark.root
@pytest.mark.usefixtures("store")
def test_a_storage_folder_another_user_made_gets_no_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = _shared_cwd(tmp_path, monkeypatch)
    (cwd / "storage").mkdir()
    os.chmod(cwd / "storage", 0o777)  # noqa: S103 - the attacker's, open to all
    _of_nobody(cwd / "storage")
    result = CliRunner().invoke(app, ["artifacts", "fetch", SCENARIO_ID])
    assert result.exit_code == 1, result.output
    assert (f"storage is owned by uid {NOBODY} (mode 777): another user could choose where "
            "the files go or swap them") in result.output
    assert list((cwd / "storage").iterdir()) == []


@pytest.mark.usefixtures("store")
def test_the_default_dir_of_ones_own_is_written_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["artifacts", "fetch", SCENARIO_ID])
    assert result.exit_code == 0, result.output
    written = tmp_path / "storage" / "scenarios" / SCENARIO_ID / "results"
    assert sorted(p.name for p in written.iterdir()) == [
        "evidence.tar.zst", "score.json", "verdict.pub", "verdict.sig"]
