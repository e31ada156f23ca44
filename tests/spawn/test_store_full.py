"""A state store out of room (its disk full) answers a spawn 503 with Retry-After, keeps
nothing of it, and serves the same request once room is made.

Before, the store's "database or disk is full" was an unhandled error: 500
`internal_error`, as if the request were at fault (crash drill CK). Real SQLite on a real
4 MiB tmpfs, filled to the last byte; a real spawn_service and nats-server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..conftest import SQLITE_ONLY
from ..support.small_disk import fill_disk, small_tmpfs
from .conftest import MakeSpawn
from .outage_drill import spawn_across_outage

# SQLite only: its file is on the small disk (a PostgreSQL server's disk is its own).
pytestmark = [pytest.mark.root, pytest.mark.parametrize("db_url", [SQLITE_ONLY],
                                                        indirect=True)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of this test's own, unmounted afterwards."""
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        yield disk


def test_a_spawn_on_a_full_store_is_503_and_keeps_nothing(make_spawn: MakeSpawn,
                                                         small_disk: Path) -> None:
    env = make_spawn(FORGE_DB_URL=f"sqlite:///{small_disk / 'forge.db'}")
    spawn_across_outage(env, _filled(small_disk), "req-disk-full-1")


@contextmanager
def _filled(disk: Path) -> Iterator[None]:
    """`disk` full to its last byte for the block; its room back after."""
    filler = fill_disk(disk)
    try:
        yield
    finally:
        filler.remove()
