"""Teardown of a lab's cgroups reads one hierarchy and still leaves nothing: every process
in the subtree is killed, every directory in every hierarchy is removed, also after a
crash midway through a removal, on a cgroup2 hierarchy (``cgroup.kill``), and on v1
when a host agent moved a lab process out of the lab's pids tree only (the slow path)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from forge.runtime import Limits
from forge.runtime.base import RuntimeFault
from forge.runtime.local import LocalRuntime
from forge.runtime.local.cgroup_tree import rmdir_if_empty
from forge.runtime.local.cgroups import CGROUP_ROOT, Cgroups
from forge.runtime.local.uids import UidPool
from tests.runtime.helpers import simple_lab

V1_ONLY = pytest.mark.skipif(Cgroups.detect().version == 2,
                             reason="one hierarchy: a process cannot be split across them")


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


@pytest.fixture()
def scratch_pids(prefix: str) -> Iterator[str]:
    """A pids cgroup outside any lab (where a host agent could put a process); whatever
    is left in it goes back to the root pids cgroup before it is removed."""
    root = os.path.join(CGROUP_ROOT, "pids")
    path = os.path.join(root, f"{prefix}.scratch{secrets.token_hex(3)}")
    os.mkdir(path)
    yield path
    with open(os.path.join(path, "cgroup.procs"), encoding="ascii") as fh:
        left = fh.read().split()
    for pid in left:
        with contextlib.suppress(OSError), \
                open(os.path.join(root, "cgroup.procs"), "w", encoding="ascii") as out:
            out.write(pid)
    end = time.monotonic() + 10
    while True:
        try:
            os.rmdir(path)
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


def _split(cg: Cgroups, parts: tuple[str, ...], scratch: str, pid: int) -> None:
    """What a host agent moving one hierarchy at a time does: ``pid`` in the lab's
    memory and cpu cgroups ``parts`` but in the pids cgroup ``scratch``."""
    _join([f for f in cg.procs_files(*parts) if "/pids/" not in f], pid)
    _join([os.path.join(scratch, "cgroup.procs")], pid)


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
        for leaf, host in zip(cg.paths(stem, "b", "t1")[1:], cg.paths(stem, "b")[1:],
                              strict=True):
            os.rmdir(leaf)
            os.rmdir(host)
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


@V1_ONLY
@pytest.mark.parametrize("pids_tree", [True, False], ids=["pids-tree", "no-pids-tree"])
def test_remove_kills_a_process_moved_out_of_the_pids_tree(
    stem: str, sleeper: subprocess.Popen[bytes], scratch_pids: str, pids_tree: bool
) -> None:
    """The fast path reads the pids tree only; a process left in the lab's memory/cpu
    cgroups (or a tree whose pids part is already gone) is found when their rmdir is
    busy, killed, reported, and every hierarchy is removed."""
    cg = Cgroups.detect()
    try:
        if pids_tree:
            for parts in ((stem,), (stem, "box"), (stem, "box", "x1")):
                cg.create(parts, None)
        else:
            for base in cg.bases()[1:]:
                os.makedirs(os.path.join(base, stem, "box", "x1"))
        _split(cg, (stem, "box", "x1"), scratch_pids, sleeper.pid)
        assert cg.kill(stem) is True  # the pids tree is empty: the fast path sees nothing
        assert cg.remove(stem) == {sleeper.pid}
        assert sleeper.wait(timeout=30) == -signal.SIGKILL
        assert _leftovers(cg, stem) == []
    finally:
        _cleanup(cg, stem)


@V1_ONLY
def test_destroy_kills_a_process_a_host_agent_moved_out_of_the_pids_tree(
    rt: LocalRuntime, sleeper: subprocess.Popen[bytes], scratch_pids: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A process in a lab's memory and cpu cgroups but another pids cgroup (systemd or
    cgclassify moving it one hierarchy at a time) dies with the lab; destroy succeeds,
    names the pid it had to kill, and leaves no cgroup in any hierarchy."""
    lab = "split-" + secrets.token_hex(3)
    stem = rt.names.lab(lab)
    try:
        rt.create(simple_lab(lab, Limits(memory_mb=128, cpu=0.5, pids=64)))
        # The host's cgroup: under v1 the lab's in the memory hierarchy (``procs_files``).
        _split(rt.cgroups, (stem, "box"), scratch_pids, sleeper.pid)
        rt.destroy(lab)
        assert sleeper.wait(timeout=30) == -signal.SIGKILL
        assert _leftovers(rt.cgroups, stem) == []
        assert str(sleeper.pid) in caplog.text
    finally:
        with contextlib.suppress(Exception):
            rt.destroy(lab)


@V1_ONLY
def test_a_lab_of_the_earlier_release_is_sealed_and_destroyed_with_its_memory_leaves(
    rt: LocalRuntime,
) -> None:
    """The release before kept a memory cgroup per host and per exec or tty leaf. Such a
    lab, live across the upgrade with a terminal's leaf left by the restart, is sealed
    (which no longer sees memory leaves) and then destroyed: nothing is left in any
    hierarchy. Review AV: the destroy spun on the busy host directory and failed, every
    time."""
    lab = "old-" + secrets.token_hex(3)
    stem = rt.names.lab(lab)
    try:
        rt.create(simple_lab(lab, Limits(memory_mb=128, cpu=0.5, pids=64)))
        memory = os.path.join(CGROUP_ROOT, "memory", stem)
        os.mkdir(os.path.join(memory, "box"))
        for base in [*rt.cgroups.paths(stem, "box"), os.path.join(memory, "box")]:
            os.mkdir(os.path.join(base, "t0123456789ab"))
        rt.seal(lab)
        rt.destroy(lab)
        assert _leftovers(rt.cgroups, stem) == []
        assert not os.path.exists(memory)
    finally:
        with contextlib.suppress(Exception):
            rt.destroy(lab)


def test_a_top_is_removed_at_once_when_empty_and_left_whole_when_busy(stem: str) -> None:
    """The one-walk teardown's shortcut: a hierarchy's top goes with one rmdir when nothing
    is below it; with a child cgroup it is reported busy and nothing is removed (the
    caller then walks it), and a top already gone counts as removed."""
    cg = Cgroups.detect()
    top = cg.paths(stem)[0]
    try:
        cg.create((stem,), None)
        cg.create((stem, "left"), None)
        assert rmdir_if_empty(top) is False
        assert os.path.isdir(os.path.join(top, "left"))
        cg.remove(stem)
        assert _leftovers(cg, stem) == []
        assert rmdir_if_empty(top) is True  # gone already
        cg.create((stem,), None)
        assert rmdir_if_empty(top) is True
        assert not os.path.exists(top)
    finally:
        _cleanup(cg, stem)


FREEZER = os.path.join(CGROUP_ROOT, "freezer")


@V1_ONLY
@pytest.mark.skipif(not os.path.isdir(FREEZER), reason="no v1 freezer hierarchy mounted")
def test_a_lab_process_that_cannot_die_yet_fails_the_destroy_until_it_does(
    rt: LocalRuntime, prefix: str, sleeper: subprocess.Popen[bytes]
) -> None:
    """A lab process SIGKILL cannot end yet (frozen by the v1 freezer: the kill waits for
    a thaw, like a process stuck in the kernel) makes destroy fail, naming it, instead of
    reporting a clean teardown; the lab stays listed (degraded) with its cgroups, and the
    next destroy once it can die removes everything."""
    lab = "frozen-" + secrets.token_hex(3)
    stem = rt.names.lab(lab)
    frozen = os.path.join(FREEZER, f"{prefix}.frz{secrets.token_hex(3)}")
    os.mkdir(frozen)
    try:
        rt.create(simple_lab(lab, Limits(memory_mb=128, cpu=0.5, pids=64)))
        leaf = (stem, "box", "stuck")
        rt.cgroups.create(leaf, None)
        _join(rt.cgroups.procs_files(*leaf), sleeper.pid)
        _join([os.path.join(frozen, "cgroup.procs")], sleeper.pid)
        with open(os.path.join(frozen, "freezer.state"), "w", encoding="ascii") as fh:
            fh.write("FROZEN")
        learner = rt.identity(lab).learner
        with pytest.raises(OSError, match=f"processes survived SIGKILL in .*: {sleeper.pid}"):
            rt.destroy(lab)
        assert sleeper.poll() is None  # still there: the kill waits for the thaw
        assert [i.lab_id for i in rt.list() if i.lab_id == lab] == [lab]
        assert _leftovers(rt.cgroups, stem) != []
        assert learner in rt.uids.claimed()  # not handed to another lab while it lives:
        assert os.path.isdir(rt.names.lab_dir(lab))  # the claim stays live (not stale)...
        with pytest.raises(RuntimeFault, match="no free lab uid"):  # ...so a claim of that
            UidPool(learner, 2, rt.uids.claims_dir).claim("/nonexistent/other-lab")  # pair fails
        with open(os.path.join(frozen, "freezer.state"), "w", encoding="ascii") as fh:
            fh.write("THAWED")
        assert sleeper.wait(timeout=30) == -signal.SIGKILL
        rt.destroy(lab)
        assert _leftovers(rt.cgroups, stem) == []
        assert lab not in [i.lab_id for i in rt.list()]
        assert learner not in rt.uids.claimed()
    finally:
        with contextlib.suppress(OSError), \
                open(os.path.join(frozen, "freezer.state"), "w", encoding="ascii") as fh:
            fh.write("THAWED")
        with contextlib.suppress(Exception):
            rt.destroy(lab)
        end = time.monotonic() + 10
        while os.path.isdir(frozen) and time.monotonic() < end:
            with contextlib.suppress(OSError):
                os.rmdir(frozen)
            time.sleep(0.05)
        assert not os.path.isdir(frozen), f"freezer cgroup {frozen} left behind"
