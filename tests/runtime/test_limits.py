"""Resource limits: a fork bomb or a memory hog stays inside its lab (root)."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator

import pytest

from forge.runtime import Limits
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import sh, simple_lab

pytestmark = pytest.mark.root


@pytest.fixture()
def two_labs(rt: LocalRuntime) -> Iterator[tuple[str, str]]:
    victim, bystander = "lim-" + secrets.token_hex(4), "by-" + secrets.token_hex(4)
    rt.create(simple_lab(victim, Limits(cpu=0.5, memory_mb=64, pids=48)))
    rt.create(simple_lab(bystander))
    yield victim, bystander
    rt.destroy(victim)
    rt.destroy(bystander)


def _cg(rt: LocalRuntime, lab: str, controller: str, name: str) -> str:
    stem = rt.names.lab(lab)
    if rt.cgroups.version == 2:
        path = os.path.join(rt.cgroups.root, stem, name)
    else:
        path = os.path.join(rt.cgroups.root, controller, stem, name)
    with open(path) as fh:
        return fh.read().strip()


def test_limits_are_applied_to_lab_and_host_cgroups(
    rt: LocalRuntime, two_labs: tuple[str, str]
) -> None:
    lab = two_labs[0]
    if rt.cgroups.version == 2:
        assert _cg(rt, lab, "", "pids.max") == "48"
        assert _cg(rt, lab, "", "memory.max") == str(64 << 20)
        assert _cg(rt, lab, "", "cpu.max") == "50000 100000"
        assert _cg(rt, lab, "", "box/pids.max") == "48"
        assert _cg(rt, lab, "", "box/cpu.max") == "max 100000"  # the lab's quota bounds it
    else:
        assert _cg(rt, lab, "pids", "pids.max") == "48"
        assert _cg(rt, lab, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert _cg(rt, lab, "cpu", "cpu.cfs_quota_us") == "50000"
        assert _cg(rt, lab, "cpu", "cpu.cfs_period_us") == "100000"  # what the quota is of
        assert _cg(rt, lab, "cpu", "box/cpu.cfs_period_us") == "100000"
        assert _cg(rt, lab, "pids", "box/pids.max") == "48"
        assert _cg(rt, lab, "cpu", "box/cpu.cfs_quota_us") == "-1"  # the lab's bounds it
    # Every process of the host, including exec'd ones, is inside the lab's cgroup.
    res = rt.exec(lab, "box", ["cat", "/proc/self/cgroup"])
    assert rt.names.lab(lab) + "/box/" in res.stdout_text


def test_memory_is_limited_at_the_lab_alone_even_while_a_command_runs(
    rt: LocalRuntime, two_labs: tuple[str, str]
) -> None:
    """No memory cgroup below a lab's (a host's limit is its lab's): an exec'd process
    reads the lab's memory cgroup as its own, and the lab's memory tree has no child
    while it runs. Each memory cgroup removed costs the kernel a walk of every mounted
    filesystem's cache lists, under locks the next create waits for."""
    lab = two_labs[0]
    stem = rt.names.lab(lab)
    res = rt.exec(lab, "box", ["cat", "/proc/self/cgroup"])
    lines = [line.split(":", 2) for line in res.stdout_text.splitlines()]
    if rt.cgroups.version == 1:
        memory = [p for _n, ctrls, p in lines if "memory" in ctrls.split(",")]
        assert memory == [f"/{stem}"], lines
        top = os.path.join(rt.cgroups.root, "memory", stem)
        assert [e.name for e in os.scandir(top) if e.is_dir()] == []
    else:
        control = os.path.join(rt.cgroups.root, stem, "cgroup.subtree_control")
        with open(control, encoding="ascii") as fh:
            assert "memory" not in fh.read().split()
        assert not os.path.exists(os.path.join(rt.cgroups.root, stem, "box", "memory.max"))


def _throttled(rt: LocalRuntime, lab: str) -> int:
    """Periods the lab's cgroup was throttled for its CPU quota (cpu.stat)."""
    stat = _cg(rt, lab, "cpu", "cpu.stat")
    return int(dict(line.split() for line in stat.splitlines())["nr_throttled"])


def test_a_hosts_cpu_is_held_to_its_labs_quota(
    rt: LocalRuntime, two_labs: tuple[str, str]
) -> None:
    """The CPU quota sits on the lab's cgroup only (a host's would equal it): two busy
    loops in a host of a lab allowed half a CPU are throttled there, so a host cannot
    take more than its lab is allowed; a lab without a lower quota is not."""
    victim, bystander = two_labs
    before = _throttled(rt, victim), _throttled(rt, bystander)
    spin = "for i in 1 2; do timeout 2 sh -c 'while :; do :; done' & done; wait"
    # On a machine busy with other work two loops may get under half a CPU in 2 s and
    # never reach the quota: spun again, a few times at most, until they do.
    for _ in range(5):
        sh(rt, victim, "box", spin, timeout=20)
        if _throttled(rt, victim) > before[0]:
            break
    assert _throttled(rt, victim) > before[0]
    assert _throttled(rt, bystander) == before[1]


def test_fork_bomb_is_contained(rt: LocalRuntime, two_labs: tuple[str, str]) -> None:
    victim, bystander = two_labs
    # In a subshell: the shell that started it could itself be refused a fork for the
    # second half of the first pipe when the first half's bomb filled the pids limit first
    # (CI: "Cannot fork", exit 2 after 0.1 s, so the exec never ran into its timeout).
    bomb = "(b() { b | b & }; b)"
    # exec, not a fork: with the bomb at the pids limit the shell cannot fork a `sleep`
    # (it then exited at once, "Cannot fork", and the exec never ran into its timeout)
    res = sh(rt, victim, "box", bomb + "; exec sleep 30", timeout=3)
    assert res.timed_out
    # The machine and other labs stay responsive (the bystander answers while the bomb's
    # processes are still there; a starved one would run into the timeout), and the victim
    # lab recovers.
    fine = rt.exec(bystander, "box", ["echo", "fine"], timeout=60)
    assert not fine.timed_out and fine.stdout == b"fine\n"
    assert rt.exec(victim, "box", ["echo", "alive"]).stdout == b"alive\n"


def test_pids_limit_refuses_forks_beyond_it(
    rt: LocalRuntime, two_labs: tuple[str, str]
) -> None:
    victim = two_labs[0]
    script = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 200:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print(n, e.errno)\n"
    )
    res = rt.exec(victim, "box", ["python3", "-c", script], timeout=20)
    started, err = (int(x) for x in res.stdout_text.split())
    assert err == errno.EAGAIN
    assert 10 < started < 48
    assert rt.exec(victim, "box", ["echo", "alive"]).stdout == b"alive\n"


def test_memory_hog_is_killed_inside_the_lab(rt: LocalRuntime, two_labs: tuple[str, str]) -> None:
    victim, bystander = two_labs
    hog = "x = b'y' * (512 * 1024 * 1024); print('survived')"
    res = rt.exec(victim, "box", ["python3", "-c", hog], timeout=30)
    assert res.exit_code == 137, (res.exit_code, res.stderr_text)
    assert b"survived" not in res.stdout
    assert rt.exec(bystander, "box", ["echo", "fine"]).stdout == b"fine\n"
    assert rt.exec(victim, "box", ["echo", "alive"]).stdout == b"alive\n"


def test_every_process_of_a_hosts_sandbox_is_under_the_host_limits(
    rt: LocalRuntime, two_labs: tuple[str, str]
) -> None:
    """The sandbox's init and service are in the host's cgroup, below its and the lab's
    limits, in every hierarchy. Under v1 they sit in the lab's memory cgroup itself (the
    lab's memory limit is the host's) but keep their own ``init`` leaf in the cpu
    hierarchy: v1 weighs an inner node's tasks one by one against its child cgroups, so a
    service with many runnable threads there would starve the grader's, exec and tty
    leaves of the host's CPU."""
    lab = two_labs[0]
    stem = rt.names.lab(lab)
    pids = rt.cgroups.pids(stem, "box", "init")
    assert len(pids) >= 2  # bwrap's monitor and the sandbox's init, at least
    leaf = f"/{stem}/box/init"
    wanted = ({"pids": leaf, "memory": f"/{stem}", "cpu": leaf} if rt.cgroups.version == 1
              else {"": leaf})
    for pid in pids:
        with open(f"/proc/{pid}/cgroup", encoding="ascii") as fh:
            lines = [line.split(":", 2) for line in fh.read().splitlines()]
        for controller, where in wanted.items():
            paths = [p for _n, ctrls, p in lines if controller in ctrls.split(",")
                     or (controller == "" and ctrls == "")]
            assert paths and all(p == where for p in paths), (pid, controller, lines)
