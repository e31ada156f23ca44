"""An operator command on a full storage disk says so in one line (exit 1), not with a
Python traceback (an operator drill: `forge keys rotate`, `apikey create` and
`entitlements grant` each printed a page of rich traceback). A real tmpfs, filled."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import SQLITE_ONLY
from .test_storage_option import forge

pytestmark = pytest.mark.root
_libc = ctypes.CDLL(None, use_errno=True)
HINT = "make room on the storage root's disk and run it again"


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    assert _libc.mount(b"tmpfs", str(disk).encode(), b"tmpfs", 0, b"size=4m,nr_inodes=64") == 0
    try:
        yield disk
    finally:
        _libc.umount2(str(disk).encode(), 2)


def fill(disk: Path) -> None:
    """Fill ``disk`` to its last block: a short write leaves room a small file fits in, and
    a file-size limit on the test process stops one file early, so more files follow."""
    for n in range(64):
        try:
            fd = os.open(disk / f"filler{n}", os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            break
        try:
            for size in (65536, 4096, 1):
                try:
                    while os.write(fd, b"\0" * size):
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)
        if os.statvfs(disk).f_bavail == 0:
            break
    else:
        raise AssertionError(f"{disk} could not be filled")
    # tmpfs counts its blocks per CPU and may let a few more pages in from another CPU;
    # its inodes are counted exactly: none left, no new file can be made either.
    made = 0
    while made < 100_000:
        try:
            os.close(os.open(disk / f"inode{made}", os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError:
            return
        made += 1


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_commands_on_a_full_disk_refuse_in_one_line(small_disk: Path, engine: str) -> None:
    env: dict[str, str | None] = {"FORGE_DB_URL": None}
    root = str(small_disk / "storage")
    assert forge(env, "--storage", root, "keys", "generate")[0] == 0
    # No store yet: SQLite reuses its log's blocks, so a store made before the disk filled
    # may take a small write; a new one needs room it cannot have.
    fill(small_disk)
    before = sorted(os.listdir(small_disk / "storage" / "keys" / "signing"))
    for args in (("keys", "rotate"), ("apikey", "create", "--tenant", "acme", "--subject",
                                      "bob"), ("entitlements", "grant", "--tenant", "acme",
                                               "--plan", "PRO")):
        code, out, err = forge(env, "--storage", root, *args)
        assert code == 1, (args, out, err)
        assert err.startswith("forge: not done, the ") and HINT in err, (args, err)
        assert "Traceback" not in err + out and len(err.splitlines()) == 1, (args, err)
    # The keyring is as it was: the current key still the one generated.
    assert sorted(os.listdir(small_disk / "storage" / "keys" / "signing")) == before
