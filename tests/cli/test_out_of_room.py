"""An operator command on a full storage disk says so in one line (exit 1), not with a
Python traceback (an operator drill: `forge keys rotate`, `apikey create` and
`entitlements grant` each printed a page of rich traceback). A real tmpfs, filled."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import SQLITE_ONLY
from ..support.small_disk import fill_disk, small_tmpfs
from .test_storage_option import forge

pytestmark = pytest.mark.root
HINT = "make room on the storage root's disk and run it again"


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", "4m", inodes=64) as disk:
        yield disk


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_commands_on_a_full_disk_refuse_in_one_line(small_disk: Path, engine: str) -> None:
    env: dict[str, str | None] = {"FORGE_DB_URL": None}
    root = str(small_disk / "storage")
    assert forge(env, "--storage", root, "keys", "generate")[0] == 0
    # No store yet: SQLite reuses its log's blocks, so a store made before the disk filled
    # may take a small write; a new one needs room it cannot have.
    fill_disk(small_disk, inodes=True)
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
