"""BuildFence on its own (no lab, no root): what it makes on disk, and which waits it
never takes."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from forge.runtime.local import build_fence
from forge.runtime.local.build_fence import BuildFence


def test_a_fresh_state_directory_made_by_a_fence_is_owner_only(tmp_path: Path) -> None:
    # A create's first step is now the fence, before the create's own
    # makedirs(state_dir, 0o700): the state directory must not come out 0755.
    old = os.umask(0o022)
    try:
        fence = BuildFence(str(tmp_path / "runtime"))
        with fence.building("fgdm.scn-00000000000000a1"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "runtime").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "runtime" / ".fence").stat().st_mode) == 0o700


def _two_stems_on_different_stripes() -> tuple[str, str]:
    first = "fgdm.scn-00000000000000b1"
    for n in range(2, 100):
        other = f"fgdm.scn-00000000000000{n:02x}"
        if build_fence._stripe(other) != build_fence._stripe(first):
            return first, other
    raise AssertionError("no two stripes differ")


def test_two_builds_each_destroying_the_others_stripe_do_not_wait_for_each_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # Two creates in one process each fail a pool claim and destroy what they took, a
    # pool lab on the stripe the other's build holds: each held its build's fence
    # (shared) while waiting for the other's (exclusive), and both waited the whole
    # DESTROY_WAIT_S, then destroyed "anyway". A thread that holds a build fence never
    # waits for another's: what it destroys then is its own claim, built already.
    monkeypatch.setattr(build_fence, "DESTROY_WAIT_S", 3.0)
    fence = BuildFence(str(tmp_path / "runtime"))
    a, b = _two_stems_on_different_stripes()
    both_building = threading.Barrier(2, timeout=30)
    destroyed: list[str] = []

    def build_then_destroy(mine: str, theirs: str) -> None:
        with fence.building(mine):
            both_building.wait()
            with fence.destroying(theirs):
                destroyed.append(theirs)
            both_building.wait()  # neither build ends before both destroys returned

    threads = [threading.Thread(target=build_then_destroy, args=pair)
               for pair in ((a, b), (b, a))]
    with caplog.at_level(logging.WARNING, logger="forge.runtime.local.build_fence"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert sorted(destroyed) == sorted([a, b])
    assert not [r.message for r in caplog.records if "anyway" in r.getMessage()]
