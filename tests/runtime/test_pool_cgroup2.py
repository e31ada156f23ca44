"""Warm pools on cgroup v2: a claim moves a pool lab's cgroups to the scenario's name by
making a new tree and migrating every process (v2 refuses a rename), on this machine's real
cgroup2 mount (``/sys/fs/cgroup/unified``, beside the v1 hierarchies).

That mount has no controllers (this kernel binds memory, pids and cpu to v1), so there are
no limit files to write or copy there: the end-to-end test runs the runtime on it through
``Controllerless``, which skips the limits and the controller check and nothing else. The
limits copy itself (``LIMIT_FILES_V2``) cannot be exercised on this machine."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import Limits
from forge.runtime.local import LocalRuntime
from forge.runtime.local.cgroups import CGROUP_ROOT, Cgroups, detect_version
from tests.runtime.test_warm_pool import lab

from ..support.polling import until
from ..support.prefixes import runtime_prefix

# This machine's cgroup2 mount: the root on a v2 machine, its `unified` one beside v1.
UNIFIED = CGROUP_ROOT if detect_version() == 2 else os.path.join(CGROUP_ROOT, "unified")


def cgroup_of(pid: int) -> str:
    """The process's cgroup in the cgroup2 hierarchy (its ``0::`` line)."""
    with open(f"/proc/{pid}/cgroup", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("0::"):
                return line[3:].strip()
    raise AssertionError(f"pid {pid} has no cgroup2 line")


def rm_tree(top: str) -> None:
    """Kill what is left in a cgroup2 subtree and remove it, bottom-up (the runtime's own
    removal: kills, waits for the cgroups to empty, removes)."""
    Cgroups(2, os.path.dirname(top)).remove(os.path.basename(top))


@pytest.fixture
def stems() -> Iterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    old, new = f"mv{tag}.wp-old", f"mv{tag}.scn-new"
    yield old, new
    for stem in (old, new):
        rm_tree(os.path.join(UNIFIED, stem))


def join(parts: tuple[str, ...], argv: list[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` inside cgroup ``parts`` of the cgroup2 mount."""
    procs = os.path.join(UNIFIED, *parts, "cgroup.procs")

    def enter() -> None:
        with open(procs, "w", encoding="ascii") as fh:
            fh.write(str(os.getpid()))

    return subprocess.Popen(argv, preexec_fn=enter)


def test_move_migrates_every_process_and_removes_the_old_tree(
        stems: tuple[str, str]) -> None:
    """A lab-shaped tree (lab / host / init leaf, a second host, an empty exec leaf) with a
    sleeper in one leaf and, in the other, a shell that keeps forking: after ``move`` every
    process (including children forked during the migration) lives under the new name,
    the tree's shape is the same, and the old name is gone."""
    old, new = stems
    cg = Cgroups(2, UNIFIED)
    for parts in ((old,), (old, "box"), (old, "box", "init"), (old, "box", "x1"),
                  (old, "peer"), (old, "peer", "init")):
        os.mkdir(os.path.join(UNIFIED, *parts))
    sleeper = join((old, "box", "init"), ["sleep", "300"])
    forker = join((old, "peer", "init"),
                  ["sh", "-c", "while :; do sleep 0.01 & wait; done"])
    try:
        until(lambda: cgroup_of(forker.pid).endswith("/peer/init"), "the forker never joined")
        cg.move(old, new)
        assert not os.path.exists(os.path.join(UNIFIED, old))
        shape = sorted(d[len(UNIFIED) + 1:] for d, _s, _f in os.walk(os.path.join(UNIFIED, new)))
        assert shape == [new, f"{new}/box", f"{new}/box/init", f"{new}/box/x1", f"{new}/peer",
                         f"{new}/peer/init"]
        assert cgroup_of(sleeper.pid) == f"/{new}/box/init"
        assert cgroup_of(forker.pid) == f"/{new}/peer/init"
        assert sleeper.poll() is None and forker.poll() is None  # moved, not killed
        time.sleep(0.1)  # the forker's later children are born in the new tree
        with open(os.path.join(UNIFIED, new, "peer", "init", "cgroup.procs"),
                  encoding="ascii") as fh:
            assert str(forker.pid) in fh.read().split()
    finally:
        for proc in (sleeper, forker):
            proc.kill()
            proc.wait()


def test_move_waits_for_threads_not_for_a_dead_leaders_pid(stems: tuple[str, str]) -> None:
    """A process whose main thread exited while another thread runs stays listed in the
    old cgroup's cgroup.procs after the move took that thread: the move is done when the
    old cgroup holds no thread (it waited for its deadline and failed the claim before)."""
    old, new = stems
    for parts in ((old,), (old, "leaf")):
        os.mkdir(os.path.join(UNIFIED, *parts))
    code = ("import ctypes, threading, time\n"
            "threading.Thread(target=time.sleep, args=(300,)).start()\n"
            "time.sleep(0.1)\n"
            "ctypes.CDLL(None).syscall(60, 0)\n")  # SYS_exit: the leader alone
    proc = join((old, "leaf"), [sys.executable, "-c", code])
    try:
        until(lambda: "Z" in _state(proc.pid), "the leader never exited")
        Cgroups(2, UNIFIED).move(old, new, deadline_s=10)
        assert not os.path.exists(os.path.join(UNIFIED, old))
        with open(os.path.join(UNIFIED, new, "leaf", "cgroup.threads"),
                  encoding="ascii") as fh:
            assert len(fh.read().split()) == 1  # the live thread
    finally:
        proc.kill()
        proc.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return next(line for line in fh if line.startswith("State:"))


def test_move_of_a_missing_tree_is_nothing(stems: tuple[str, str]) -> None:
    old, new = stems
    Cgroups(2, UNIFIED).move(old, new)
    assert not os.path.exists(os.path.join(UNIFIED, new))


class Controllerless(Cgroups):
    """Cgroup v2 on a mount without controllers: no limits to write (the files do not
    exist there) and no controller check; every other operation is the real one."""

    def problems(self) -> list[str]:
        return []

    def _limit(self, parts: tuple[str, ...], limits: Limits) -> None:
        return None

    def _enable_controllers(self, path: str, controllers: tuple[str, ...]) -> None:
        return None


def test_a_pool_serves_claims_on_cgroup2(tmp_path: Path) -> None:
    """Before, pools were off on every cgroup v2 node (a claim renamed cgroups, which v2
    refuses). Now a claim on v2 serves the scenario from the pool: the lab is the
    scenario's own (its service ran with the scenario's value), its processes are in the
    scenario's cgroups, the pool id's cgroups are gone, the pool refills, and destroy
    leaves nothing on the mount."""
    prefix = runtime_prefix("w")
    rt = LocalRuntime(str(tmp_path), prefix=prefix, cgroups=Controllerless(2, UNIFIED))
    try:
        rt.warm({"two": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1)
        pool = rt.warm_pool
        assert pool is not None and pool.off_reason is None
        until(lambda: pool.status()["two"]["ready"] == 1, "the pool never filled")
        pool_id = pool.ready_ids()[0]
        secret = secrets.token_hex(8)
        info = rt.create(lab("scn-00000000000000c2", secret))
        assert pool.stats.claimed == 1 and pool.stats.failed == 0
        until(lambda: rt.exec(info.lab_id, "box", ["cat", "/srv/service.txt"]).stdout_text
              == f"svc {secret}\n", "the personalised service never ran")
        stem, old_stem = rt.names.lab(info.lab_id), rt.names.lab(pool_id)
        assert not os.path.exists(os.path.join(UNIFIED, old_stem))
        with open(os.path.join(UNIFIED, stem, "box", "init", "cgroup.procs"),
                  encoding="ascii") as fh:
            inside = [int(p) for p in fh.read().split()]
        assert inside and all(cgroup_of(p) == f"/{stem}/box/init" for p in inside)
        until(lambda: pool.status()["two"]["ready"] == 1, "the pool was not refilled")
        rt.destroy(info.lab_id)
        assert not os.path.exists(os.path.join(UNIFIED, stem))
    finally:
        rt.warm({})
        for left in rt.list():
            rt.destroy(left.lab_id)
        rt.close()
    assert [e for e in os.listdir(UNIFIED) if e.startswith(prefix)] == []
