"""Attack: a local user plants a symlink in a storage folder `forge` made under umask 0.

Forge made the storage root, secrets/ and keys/ private whatever the umask, but every
other folder under the root (scenarios/ and each scenario's folder, audit/, retention/,
scoreboard/) with a plain mkdir: under an inherited umask 0 (a supervisor's, a shell's)
they were 0777, not sticky. A local user then moved a scenario's audit.jsonl away and put
a symlink to any file in its place: the next audit line was appended by root to that file
(or created it), and a tail without a newline was cut off first. Reproduced on a live
`forge up`: a root-owned 0600 file lost its last line when the learner submitted. Now the
`forge` command never runs with a umask weaker than 022, so nothing it makes is writable
by group or others.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.cli import UMASK_FLOOR, keep_umask_private

from ..support.traversable import traversable_folder

FORGE = [sys.executable, "-m", "forge"]
NOBODY = 65534
SID = "scn-0123456789abcdef"


def _hold(root: Path, scenario_id: str) -> None:
    """`forge retention hold` (it makes retention/ and audit/) with umask 0 inherited."""
    done = subprocess.run([*FORGE, "--storage", str(root), "retention", "hold", scenario_id],
                          capture_output=True, text=True, timeout=120, check=False, umask=0)
    assert done.returncode == 0, done.stderr


def _open_to_others(root: Path) -> list[str]:
    return [f"{p} {oct(stat.S_IMODE(p.lstat().st_mode))}" for p in [root, *root.rglob("*")]
            if not p.is_symlink() and p.lstat().st_mode & 0o022]


@pytest.fixture
def storage_root() -> Iterator[Path]:
    """A storage root others may traverse, as an operator's usually is (pytest's own
    temporary directories are not)."""
    with traversable_folder("fgumask-") as top:
        yield top / "storage"


def test_the_umask_floor_only_tightens() -> None:
    old = os.umask(0)
    try:
        assert keep_umask_private() == UMASK_FLOOR == os.umask(0o077)
        assert keep_umask_private() == 0o077  # a stricter umask stays
    finally:
        os.umask(old)


@pytest.mark.usefixtures("sqlite_only_store")
def test_folders_made_under_umask_0_are_not_writable_by_others(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    _hold(root, SID)
    assert (root / "retention").is_dir() and (root / "audit").is_dir()
    assert _open_to_others(root) == []


@pytest.mark.root
@pytest.mark.usefixtures("sqlite_only_store")
def test_another_user_cannot_swap_the_audit_log_for_a_symlink(storage_root: Path) -> None:
    _hold(storage_root, SID)
    victim = storage_root.parent / "victim"
    victim.write_bytes(b"kept line\ntail without a newline")
    victim.chmod(0o600)
    log = storage_root / "audit" / "global.jsonl"
    swap = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "/bin/sh", "-c", 'mv "$1" "$1.away" && ln -s "$2" "$1"', "sh", str(log), str(victim)],
        capture_output=True, text=True, timeout=30, check=False)
    assert swap.returncode != 0, "another user replaced the global audit log"
    assert "Permission denied" in swap.stderr
    _hold(storage_root, "scn-fedcba9876543210")
    assert victim.read_bytes() == b"kept line\ntail without a newline"
    assert not log.is_symlink()
