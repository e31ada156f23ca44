"""A local user who can write the storage root (its owner, when forge up or a cleanup runs
as root) plants the lock file as a link: the pid a root process writes into it must not
overwrite the link's target."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.stack.lock import StorageLock


@pytest.mark.skipif(os.geteuid() != 0, reason="the attack is on a lock taken as root")
def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_untouched(
        tmp_path: Path) -> None:
    """Whoever can write the storage root must not make a root forge up or cleanup write
    its pid over another file: a symlink, a hard link or a stranger's file is refused."""
    root = tmp_path / "storage"
    root.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (root / "forge-up.lock").symlink_to(victim)
    with pytest.raises(OSError):
        StorageLock.acquire(root, "forge runtime cleanup")
    (root / "forge-up.lock").unlink()
    os.link(victim, root / "forge-up.lock")
    with pytest.raises(OSError, match="not a plain file"):
        StorageLock.acquire(root)
    assert victim.read_text() == "precious\n"
    (root / "forge-up.lock").unlink()
    (root / "forge-up.lock").write_text("")
    os.chown(root / "forge-up.lock", 4242, 4242)
    with pytest.raises(OSError, match="neither root nor this user"):
        StorageLock.acquire(root)
