"""A state store out of room (its disk full) answers a spawn 503 with Retry-After, keeps
nothing of it, and serves the same request once room is made.

Before, the store's "database or disk is full" was an unhandled error: 500
`internal_error`, as if the request were at fault (crash drill CK). Real SQLite on a real
4 MiB tmpfs, filled to the last byte; a real spawn_service and nats-server.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.entitlements.grants import grant
from forge.store.models import IdempotencyRecord, QuotaSlot, Scenario

from ..conftest import SQLITE_ONLY
from .conftest import MakeSpawn
from .test_spawn_api import count, key_for, spawn

# SQLite only: its file is on the small disk (a PostgreSQL server's disk is its own).
pytestmark = [pytest.mark.root, pytest.mark.parametrize("db_url", [SQLITE_ONLY],
                                                        indirect=True)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of this test's own, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)],
                   check=True, timeout=30)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, timeout=30)


def fill(disk: Path) -> Path:
    """A file taking every free byte of ``disk`` (written until ENOSPC)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (65536, 1):  # whole blocks, then the last bytes
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def test_a_spawn_on_a_full_store_is_503_and_keeps_nothing(make_spawn: MakeSpawn,
                                                         small_disk: Path) -> None:
    env = make_spawn(FORGE_DB_URL=f"sqlite:///{small_disk / 'forge.db'}")
    db = env.state.ctx.db
    grant(db, "acme", "PRO", subject="alice")
    headers = key_for(env)
    before = {model: count(env, model) for model in (Scenario, QuotaSlot, IdempotencyRecord)}
    filler = fill(small_disk)
    with env.client() as client:
        full = spawn(client, headers, request_id="req-disk-full-1")
        assert full.status_code == 503, full.text
        assert full.json()["error"] == "store_unavailable"
        assert full.headers["retry-after"] == "5"
        os.unlink(filler)
        assert {model: count(env, model) for model in before} == before  # nothing kept
        again = spawn(client, headers, request_id="req-disk-full-1")
        assert again.status_code in (201, 202), again.text
