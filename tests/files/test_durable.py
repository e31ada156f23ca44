"""Files replaced whole (`forge.durable`): what a crash or a full disk leaves behind, and
what a planted link at the temporary name gets."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from forge.durable import replace_file, tmp_name
from forge.evidence.artifact_store import (
    COMPLETION_FILE,
    EVIDENCE_DIR,
    GRADED_FILE,
    PACK_FILE,
    SUBMITTED_FILE,
    discard_raw_evidence,
)
from forge.grading.live_record import record_path


def test_a_replaced_file_has_the_new_content_and_mode_and_no_temporary_left(
        tmp_path: Path) -> None:
    path = tmp_path / "current"
    path.write_bytes(b"old\n")
    replace_file(path, b"new\n", mode=0o644)
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current"]


def test_a_crash_leftover_is_overwritten_and_takes_the_asked_mode(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    leftover = tmp_path / tmp_name(path.name)
    leftover.write_bytes(b"half of an older write, world-readable" * 100)
    leftover.chmod(0o666)
    replace_file(path, b"{}", mode=0o600)
    assert path.read_bytes() == b"{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not leftover.exists()


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"must stay")
    path = tmp_path / "completion.json"
    (tmp_path / tmp_name(path.name)).symlink_to(target)
    with pytest.raises(OSError) as info:
        replace_file(path, b"{}")
    assert info.value.errno == errno.ELOOP
    assert target.read_bytes() == b"must stay" and not path.exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "holds.json"
    path.write_bytes(b"old")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        replace_file(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holds.json"]


def test_discarding_raw_evidence_takes_what_a_crash_left_half_written(tmp_path: Path) -> None:
    evidence = tmp_path / EVIDENCE_DIR
    evidence.mkdir()
    (evidence / "c1.stdout").write_bytes(b"out")
    live = record_path(evidence)
    names = [PACK_FILE, COMPLETION_FILE, GRADED_FILE, SUBMITTED_FILE, live.name]
    for name in names + [tmp_name(n) for n in names]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "results").mkdir()  # not raw evidence: kept
    discard_raw_evidence(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
