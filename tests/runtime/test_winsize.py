"""`SizeKeeper` on a real PTY: a stale write-back is undone while the guard lasts; after
it, or for any other size, the size the program in the terminal sets is kept."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from forge.runtime.local.winsize import REASSERTS, SizeKeeper, get_size, set_size


@pytest.fixture
def pty() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    set_size(slave, 24, 80)
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def test_a_stale_write_back_is_undone(pty: tuple[int, int]) -> None:
    master, slave = pty
    keeper = SizeKeeper()
    keeper.resize(master, 40, 120)
    set_size(slave, 24, 80)  # the shell writes back the size it read before the resize
    assert keeper.check(master) is True
    assert get_size(slave) == (40, 120)


def test_another_size_is_the_programs_own_and_kept(pty: tuple[int, int]) -> None:
    master, slave = pty
    keeper = SizeKeeper()
    keeper.resize(master, 40, 120)
    set_size(slave, 50, 90)  # `stty rows 50 cols 90`
    assert keeper.check(master) is False
    set_size(slave, 24, 80)  # and later back to the old size on purpose: kept too
    assert keeper.check(master) is False
    assert get_size(slave) == (24, 80)


def test_after_the_guard_a_replaced_size_is_kept(pty: tuple[int, int]) -> None:
    """`stty rows 24 cols 80` long after a resize from 24x80 is the learner's choice."""
    master, slave = pty
    keeper = SizeKeeper(guard_s=0.05)
    keeper.resize(master, 40, 120)
    time.sleep(0.1)  # the guard is over (a wait, not a timed assertion)
    set_size(slave, 24, 80)
    assert keeper.check(master) is False
    assert get_size(slave) == (24, 80)


def test_a_size_set_again_and_again_wins_in_the_end(pty: tuple[int, int]) -> None:
    master, slave = pty
    keeper = SizeKeeper()
    keeper.resize(master, 40, 120)
    undone = 0
    for _ in range(REASSERTS + 5):
        set_size(slave, 24, 80)
        undone += keeper.check(master)
    assert undone == REASSERTS
    assert get_size(slave) == (24, 80)
