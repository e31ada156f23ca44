"""Teardown of a lab's cgroups reads one hierarchy and still leaves nothing: every process
in the subtree is killed, every directory in every hierarchy is removed, also after a
crash midway through a removal, and on a cgroup2 hierarchy (``cgroup.kill``)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator

import pytest

from forge.runtime.local.cgroups import CGROUP_ROOT, Cgroups


def _cgroup2_root() -> str:
    """A cgroup2 mount of this machine: the root on v2, its ``unified`` one on v1."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return CGROUP_ROOT
    return os.path.join(CGROUP_ROOT, "unified")


def _join(procs_files: list[str], pid: int) -> None:
    for procs in procs_files:
        with open(procs, "w", encoding="ascii") as fh:
            fh.write(str(pid))


@pytest.fixture()
def stem(prefix: str) -> str:
    return f"{prefix}.cgtest{secrets.token_hex(3)}"


@pytest.fixture()
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def _leftovers(cg: Cgroups, stem: str) -> list[str]:
    return [p for p in cg.paths(stem) if os.path.exists(p)]


def _cleanup(cg: Cgroups, stem: str) -> None:
    with contextlib.suppress(OSError):
        cg.remove(stem)


def test_remove_kills_and_removes_in_every_hierarchy(
    stem: str, sleeper: subprocess.Popen[bytes]
) -> None:
    cg = Cgroups.detect()
    try:
        cg.create((stem,), None)
        cg.create((stem, "box"), None)
        cg.create((stem, "box", "init"), None)
        cg.create((stem, "box", "x1"), None)
        _join(cg.procs_files(stem, "box", "x1"), sleeper.pid)
        assert cg.pids(stem) == {sleeper.pid}
        cg.remove(stem)
        assert sleeper.wait(timeout=30) == -signal.SIGKILL
        assert _leftovers(cg, stem) == []
    finally:
        _cleanup(cg, stem)


def test_remove_finishes_what_a_crash_left_midway(stem: str) -> None:
    """A removal that stopped after some hierarchies (or some directories) is completed
    by the next one, whichever hierarchies still hold the lab."""
    cg = Cgroups.detect()
    try:
        for parts in ((stem,), (stem, "a"), (stem, "a", "init"), (stem, "b"),
                      (stem, "b", "t1")):
            cg.create(parts, None)
        # What an interrupted removal leaves: the last hierarchies partly removed.
        for top in cg.paths(stem)[1:]:
            os.rmdir(os.path.join(top, "b", "t1"))
            os.rmdir(os.path.join(top, "b"))
        cg.remove(stem)
        assert _leftovers(cg, stem) == []
        # A tree left only in another hierarchy (the first one already gone) too.
        if len(cg.bases()) > 1:
            os.mkdir(os.path.join(cg.bases()[-1], stem))
            os.mkdir(os.path.join(cg.bases()[-1], stem, "a"))
            cg.remove(stem)
            assert _leftovers(cg, stem) == []
    finally:
        _cleanup(cg, stem)


def test_cgroup2_teardown_kills_and_removes(stem: str, sleeper: subprocess.Popen[bytes]) -> None:
    """The v2 path (``cgroup.kill``, one hierarchy) on this machine's cgroup2 mount."""
    root = _cgroup2_root()
    assert os.path.exists(os.path.join(root, "cgroup.controllers")), "no cgroup2 mount"
    cg = Cgroups(2, root)
    top = os.path.join(root, stem)
    try:
        os.makedirs(os.path.join(top, "box", "init"))  # no limits: plain directories
        _join(cg.procs_files(stem, "box", "init"), sleeper.pid)
        assert cg.pids(stem) == {sleeper.pid}
        cg.signal_all(stem)
        assert sleeper.wait(timeout=30) == -signal.SIGKILL
        cg.remove(stem)
        assert not os.path.exists(top)
    finally:
        _cleanup(cg, stem)
