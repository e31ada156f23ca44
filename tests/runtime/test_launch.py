"""How sandboxes start: directly, in their cgroups, from a small mount namespace (or the
machine's, when the base cannot hold the lab or the kernel refuses it), with default
signals; and how many labs end at once (``destroy_many``)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import LabNotFound, RuntimeFault
from forge.runtime.local import LocalRuntime, lab_access, launch
from forge.runtime.local.host_dirs import HostPaths, seed_host_dir, write_identity
from forge.runtime.local.host_ptys import host_ptys_path
from forge.runtime.local.launch import base_namespace, lab_mounts
from forge.runtime.local.machine_etc import etc_view
from forge.runtime.local.netns import create_host_netns, create_netns, netns_path, remove_netns
from forge.runtime.local.reconcile import init_pid
from forge.runtime.local.sandbox import spawn_init
from forge.runtime.plan import plan_lab
from tests.runtime.helpers import leftovers, simple_lab

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root

# Signals 32 and 33 are glibc's own (NPTL); an environment may ignore them, and no
# process can change that through glibc, so they are left out of the comparison.
GLIBC_RESERVED = (1 << 31) | (1 << 32)
STATUS = "grep -E '^Sig(Ign|Blk)' /proc/self/status > /tmp/status; exec sleep infinity"


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def two_labs(rt: LocalRuntime) -> Iterator[tuple[str, str]]:
    """Two live labs; the second one's service records its signal state."""
    ids = ["ln-" + secrets.token_hex(3), "ln-" + secrets.token_hex(3)]
    try:
        rt.create(simple_lab(ids[0]))
        ignored = {s: signal.signal(s, signal.SIG_IGN)
                   for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGTERM)}
        try:
            rt.create(simple_lab(ids[1], command=STATUS))
        finally:
            for sig, old in ignored.items():
                signal.signal(sig, old)
        yield ids[0], ids[1]
    finally:
        rt.destroy_many([i for i in ids if os.path.isdir(rt.names.lab_dir(i))])


def _own_mounts(rt: LocalRuntime, lab_id: str) -> list[str]:
    """A lab's own mounts, deepest first: its /etc overlay (its hosts are on the
    machine's userland) and its disk."""
    return [etc_view(rt.names.etc_dir(lab_id)), rt.names.data_root(lab_id)]


def test_sandbox_starts_from_a_namespace_without_other_labs_mounts(
        rt: LocalRuntime, two_labs: tuple[str, str]) -> None:
    """bwrap's starting mount namespace holds its own lab's disk, not /run/netns nor the
    other lab's disk: its start cost does not grow with the number of live labs."""
    mine, other = two_labs
    monitor = _parent(init_pid(rt.names, other, "box"))
    with open(f"/proc/{monitor}/mountinfo", encoding="utf-8") as fh:
        text = fh.read()
    points = [line.split()[4] for line in text.splitlines()]
    assert not [p for p in points if p.startswith("/run/netns")]
    assert lab_mounts(text) == _own_mounts(rt, other)
    assert rt.names.data_root(mine) not in points
    # Nor the kernel's own file systems bwrap never reads: /sys (the sandbox joins its
    # cgroups from outside) and what is mounted below /proc and /dev.
    assert not [p for p in points if p == "/sys" or p.startswith(("/sys/", "/proc/", "/dev/"))]
    assert {"/proc", "/dev"} & set(_machine_points()) <= set(points)
    # The machine's namespace is unchanged: it still holds both disks and the namespaces.
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        machine = fh.read()
    assert {rt.names.data_root(mine), rt.names.data_root(other)} <= set(lab_mounts(machine))


def test_check_starts_from_a_namespace_without_other_labs_mounts(
        rt: LocalRuntime, two_labs: tuple[str, str]) -> None:
    """A grading check's bwrap starts like a host's sandbox: its start cost does not grow
    with the number of live labs (at 300 it took 9x its time at 0 from the machine's)."""
    mine, other = two_labs
    monitor = _parent(init_pid(rt.names, other, "box"))  # the host's sandbox: not the check
    seen: list[str] = []

    def watch() -> None:
        end = time.monotonic() + 20
        while not seen and time.monotonic() < end:
            for pid in rt.cgroups.pids(rt.names.lab(other)):
                with contextlib.suppress(OSError, ValueError):
                    with open(f"/proc/{pid}/comm", encoding="utf-8") as fh:
                        comm = fh.read().strip()
                    if comm == "bwrap" and pid != monitor and _parent(pid) == os.getpid():
                        with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as fh:
                            seen.append(fh.read())
                        return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = rt.run_check(other, "box", ["/bin/sh", "-c", "sleep 1; echo checked"])
    watcher.join()
    assert result.stdout_text == "checked\n", result.stderr_text
    assert seen, "the check's bwrap was never seen"
    points = [line.split()[4] for line in seen[0].splitlines()]
    assert not [p for p in points if p.startswith("/run/netns")]
    assert lab_mounts(seen[0]) == _own_mounts(rt, other)
    assert rt.names.data_root(mine) not in points
    # A check joins its cgroup by path before bwrap starts: its base keeps /sys.
    assert not [p for p in points if p.startswith(("/proc/", "/dev/"))]
    # (a copied namespace lists its mounts in tree order, the machine in mount order)
    assert sorted(p for p in points if p.startswith("/sys")) == \
        sorted(p for p in _machine_points() if p.startswith("/sys"))


def test_a_check_racing_teardown_is_lab_not_found_and_keeps_the_base(
        rt: LocalRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Teardown unmounts a host's namespace before it unlinks the file: a check entering it
    then gets EINVAL. That says the lab is going, not that the kernel refuses the base
    namespace (which would slow every later start in the process)."""
    monkeypatch.setattr(launch, "_unusable", False)
    lab_id = "ln-" + secrets.token_hex(3)
    rt.create(simple_lab(lab_id))
    path = netns_path(rt.names.host_ns(lab_id, "box")).encode()
    snapshot = lab_access.take_snapshot

    def teardown_begins(data_dir: str, dest: str) -> object:
        taken = snapshot(data_dir, dest)
        assert launch._libc.umount2(path, 2) == 0  # MNT_DETACH; the file stays
        return taken

    monkeypatch.setattr(lab_access, "take_snapshot", teardown_begins)
    try:
        with pytest.raises(LabNotFound):
            rt.run_check(lab_id, "box", ["/bin/true"])
        assert launch.base_usable()
    finally:
        rt.destroy(lab_id)
    assert not os.path.exists(path)


def test_service_starts_with_default_signals(rt: LocalRuntime,
                                             two_labs: tuple[str, str]) -> None:
    """A service starts with no signal ignored or blocked, even when the runtime's own
    process ignores SIGINT/SIGQUIT (as a background job of a shell does)."""
    _mine, other = two_labs
    out = ""
    for _ in range(50):
        out = rt.exec(other, "box", ["cat", "/tmp/status"]).stdout.decode()
        if out.count("\n") == 2:
            break
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert int(fields["SigIgn"], 16) & ~GLIBC_RESERVED == 0
    assert int(fields["SigBlk"], 16) & ~GLIBC_RESERVED == 0


def test_sandbox_processes_are_in_the_host_cgroup(rt: LocalRuntime,
                                                  two_labs: tuple[str, str]) -> None:
    """bwrap and every process it started are in the host's init cgroup."""
    _mine, other = two_labs
    init = init_pid(rt.names, other, "box")
    members = rt.cgroups.pids(rt.names.lab(other), "box", "init")
    assert {init, _parent(init)} <= members
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid in members and int(pid) not in members:
            # forked since the cgroup was read (the box's shell runs short-lived children):
            # a child starts in its parent's cgroup, so it is there on a second read
            members |= rt.cgroups.pids(rt.names.lab(other), "box", "init")
            assert int(pid) in members or not os.path.exists(f"/proc/{pid}")


def test_destroy_many_leaves_nothing(rt: LocalRuntime, prefix: str) -> None:
    """Labs destroyed together leave no namespace, link, cgroup, process, mount or state
    directory behind, and give their uids back."""
    ids = ["dm-" + secrets.token_hex(3) for _ in range(4)]
    uids = set()
    try:
        for lab_id in ids:
            rt.create(simple_lab(lab_id, command="sleep infinity"))
            uids.add(rt.identity(lab_id).learner)
    finally:
        rt.destroy_many([i for i in ids if os.path.isdir(rt.names.lab_dir(i))])
    left = [x for x in leftovers(prefix, rt.names.state_dir) if any(i in x for i in ids)]
    assert left == []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        mounts = fh.read()
    assert not [i for i in ids if i in mounts]
    assert not uids & set(rt.uids.claimed())


def _machine_points() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return [line.split()[4] for line in fh.read().splitlines()]


def test_system_mounts_are_those_below_proc_and_dev_and_sys_unless_kept() -> None:
    """Which mounts a base leaves out besides the labs': /proc and /dev themselves stay
    (bwrap binds device nodes from /dev), a path merely starting with /sys stays."""
    lines = [f"{n} 1 0:{n} / {p} rw - fs x rw" for n, p in enumerate(
        ["/", "/proc", "/proc/sys/fs/binfmt_misc", "/dev", "/dev/pts", "/dev/shm", "/sys",
         "/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sysroot", "/srv/dev/x"])]
    data = "\n".join(lines).encode()
    assert launch.system_mounts(data, keep_sys=True) == [
        "/proc/sys/fs/binfmt_misc", "/dev/pts", "/dev/shm"]
    assert launch.system_mounts(data, keep_sys=False) == [
        "/proc/sys/fs/binfmt_misc", "/dev/pts", "/dev/shm", "/sys", "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory"]


def test_lab_mounts_keeps_non_ascii_paths() -> None:
    """Mount points are decoded from the kernel's octal escapes only: a non-ASCII state
    directory is found as itself (else the base keeps old labs' disks pinned)."""
    line = ("812 30 0:99 / /srv/f\u00f6rge\\040st\u00e4te/lab rw,relatime shared:1 - tmpfs "
            "forge-lab rw,size=1024k\n")
    assert lab_mounts(line) == ["/srv/f\u00f6rge st\u00e4te/lab"]
    assert lab_mounts(line.encode()) == ["/srv/f\u00f6rge st\u00e4te/lab"]


def test_base_leaves_out_labs_under_a_non_ascii_state_dir(tmp_path: Path) -> None:
    """With a state directory named in UTF-8, a sandbox's starting namespace still holds
    only its own lab's disk."""
    state = tmp_path / "f\u00f6rge st\u00e4te"
    runtime = LocalRuntime(str(state), prefix=runtime_prefix("u"))
    ids = ["na-" + secrets.token_hex(3) for _ in range(2)]
    try:
        for lab_id in ids:
            runtime.create(simple_lab(lab_id))
        monitor = _parent(init_pid(runtime.names, ids[1], "box"))
        with open(f"/proc/{monitor}/mountinfo", "rb") as fh:
            assert lab_mounts(fh.read()) == _own_mounts(runtime, ids[1])
    finally:
        runtime.destroy_many([i for i in ids if os.path.isdir(runtime.names.lab_dir(i))])
        runtime.close()


def test_rootfs_mounted_after_the_base_falls_back(tmp_path: Path) -> None:
    """A rootfs whose system dirs were mounted after the base namespace was made (they
    are empty directories there) still gives working labs: the sandbox starts from the
    machine's namespace instead."""
    base_namespace()
    root = tmp_path / "late-root"
    mounted = []
    for d in ("usr", "etc"):
        (root / d).mkdir(parents=True)
    for d in ("bin", "sbin", "lib", "lib64"):
        if os.path.exists(f"/{d}"):
            (root / d).symlink_to(os.path.realpath(f"/{d}"))
    late = LocalRuntime(str(tmp_path / "late-state"), prefix=runtime_prefix("r"),
                        rootfs=str(root))
    lab_id = "lr-" + secrets.token_hex(3)
    try:
        for d in ("usr", "etc"):
            subprocess.run(["mount", "--bind", f"/{d}", str(root / d)], check=True)
            mounted.append(str(root / d))
        late.create(simple_lab(lab_id))
        assert late.exec(lab_id, "box", ["sh", "-c", "echo up"]).stdout_text == "up\n"
    finally:
        if os.path.isdir(late.names.lab_dir(lab_id)):
            late.destroy(lab_id)
        late.close()
        for path in mounted:
            subprocess.run(["umount", "-l", path], check=False)


def test_a_start_whose_lab_disk_is_gone_is_lab_gone_and_keeps_the_base(
        tmp_path: Path) -> None:
    """A start racing its lab's teardown, the network namespace still there but the disk
    already gone: LabGone (a check reports LabNotFound), nothing started, and the base
    is still used for every later lab."""
    ns = "fgt-" + secrets.token_hex(4)
    started: list[bool] = []
    create_netns(ns)
    try:
        with pytest.raises(launch.LabGone):
            launch.start_in_lab(ns, str(tmp_path / "torn-down" / "data"), [],
                                lambda: started.append(True))
        assert started == [] and launch.base_usable()
    finally:
        remove_netns(ns)


def test_kernel_refusing_the_base_falls_back_once(rt: LocalRuntime,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """When the kernel has no open_tree (ENOSYS on an old kernel; a syscall number no
    kernel has stands in for it), labs still start, from the machine's namespace, and
    the base is not tried again."""
    monkeypatch.setattr(launch, "SYS_OPEN_TREE", 99_999)
    monkeypatch.setattr(launch, "_unusable", False)
    lab_id = "nb-" + secrets.token_hex(3)
    try:
        rt.create(simple_lab(lab_id))
        assert not launch.base_usable()
        assert rt.exec(lab_id, "box", ["sh", "-c", "echo up"]).stdout_text == "up\n"
    finally:
        if os.path.isdir(rt.names.lab_dir(lab_id)):
            rt.destroy(lab_id)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if text.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_sandbox_that_cannot_join_its_cgroup_is_a_fault_and_leaves_nothing(
        tmp_path: Path, prefix: str) -> None:
    """A sandbox whose cgroup is gone when it is moved there (a lab destroyed during its
    create) ends as a RuntimeFault naming the host, with no bwrap or sandbox process
    left running, in the host's cgroup or elsewhere."""
    host = plan_lab(simple_lab("sf-" + secrets.token_hex(3))).hosts[0]
    paths = HostPaths(str(tmp_path / "lab"), str(tmp_path / "lab" / "box"),
                      str(tmp_path / "data" / "box"))
    write_identity(paths.etc_dir, 65530, 65531)
    seed_host_dir(paths, host, 65530)
    ns = f"{prefix}.sf{secrets.token_hex(3)}"
    create_host_netns(ns, 65530)
    try:
        with pytest.raises(RuntimeFault) as info:
            spawn_init(host, paths, ns, [str(tmp_path / "gone" / "cgroup.procs")], "/",
                       65530)
        assert "host box: sandbox ended while starting" in str(info.value)
        assert _processes_mentioning(paths.data_dir) == []
    finally:
        remove_netns(ns)
        _unmount_etc(paths.etc_dir)


def _unmount_etc(etc_dir: str) -> None:
    """Unmount the /etc overlay a sandbox start mounted under ``etc_dir`` (a lab's is on
    its disk and goes with it; these tests' are in their temporary directory)."""
    view = etc_view(etc_dir)
    if os.path.ismount(view):
        subprocess.run(["umount", "-l", view], check=True, timeout=30)


def _ended(pid: int) -> bool:
    """Whether `pid` has exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_sandbox_whose_bwrap_is_killed_mid_start_leaves_nothing_running(
        tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """bwrap killed from outside (an operator's kill, the OOM killer) after it reported its
    child and before the child joined its cgroup: the child, now another process's, ends,
    and the start is a RuntimeFault naming the host. bwrap reports its child before it
    lets it run, so one killed in between left the child waiting for ever (seen under
    load); it is now killed through a pidfd once shown to be in the host's namespace."""
    from forge.runtime.local import sandbox

    host = plan_lab(simple_lab("sk-" + secrets.token_hex(3))).hosts[0]
    paths = HostPaths(str(tmp_path / "lab"), str(tmp_path / "lab" / "box"),
                      str(tmp_path / "data" / "box"))
    write_identity(paths.etc_dir, 65530, 65531)
    seed_host_dir(paths, host, 65530)
    # What bwrap binds over /dev/pts (a lab's build mounts a devpts there): without it the
    # sandbox's setup fails and its child may end before it is looked at.
    os.makedirs(host_ptys_path(paths.data_dir))
    (tmp_path / "cg").mkdir()
    ns = f"{prefix}.sk{secrets.token_hex(3)}"
    real_parent_of = sandbox._parent_of
    children: list[int] = []

    def bwrap_killed_first(pid: int) -> int:
        children.append(pid)
        bwrap = real_parent_of(pid)
        # 0 (the child already ended) would be kill(0): this test's own process group.
        assert bwrap > 1, f"the sandbox's child {pid} ended before its bwrap was killed"
        os.kill(bwrap, signal.SIGKILL)
        for _ in range(500):  # bounded: until the child is another process's (<= 5 s)
            if real_parent_of(pid) != bwrap:
                break
            time.sleep(0.01)
        return real_parent_of(pid)

    monkeypatch.setattr(sandbox, "_parent_of", bwrap_killed_first)
    create_host_netns(ns, 65530)
    try:
        with pytest.raises(RuntimeFault) as info:
            spawn_init(host, paths, ns, [str(tmp_path / "cg" / "cgroup.procs")], "/", 65530)
        assert "host box: sandbox ended while starting" in str(info.value)
        assert len(children) == 1
        for _ in range(2000):  # bounded (<= 20 s: a loaded machine)
            if _ended(children[0]):
                break
            time.sleep(0.01)
        assert _ended(children[0])
        assert _processes_mentioning(paths.data_dir) == []
        assert not (tmp_path / "cg" / "cgroup.procs").exists()  # nothing was moved
    finally:
        remove_netns(ns)
        _unmount_etc(paths.etc_dir)


def test_an_orphan_is_killed_only_when_it_is_in_the_hosts_namespace(prefix: str) -> None:
    """``_end_orphan`` (a bwrap that died before letting its child run): a process in the
    host's network namespace is killed and waited for; one elsewhere (a pid reused by
    another process) is left alone."""
    from forge.runtime.local import sandbox

    ns = f"{prefix}.eo{secrets.token_hex(3)}"
    create_host_netns(ns, 65530)
    inside = subprocess.Popen(["nsenter", f"--net={netns_path(ns)}", "--", "sleep", "60"])
    outside = subprocess.Popen(["sleep", "60"])
    try:
        for _ in range(3000):  # bounded (30 s): until nsenter has joined it
            if os.path.samestat(os.stat(f"/proc/{inside.pid}/ns/net"), os.stat(netns_path(ns))):
                break
            time.sleep(0.01)
        sandbox._end_orphan(outside.pid, ns)
        sandbox._end_orphan(inside.pid, ns)
        assert inside.wait(timeout=10) == -signal.SIGKILL
        assert outside.poll() is None
    finally:
        for proc in (inside, outside):
            proc.kill()
            proc.wait()
        remove_netns(ns)
