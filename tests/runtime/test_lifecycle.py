"""Lifecycle: atomic create, duplicate ids, crash reconciliation, no leaks (root)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from forge.runtime import (
    BuildsStopped,
    HostSpec,
    LabExists,
    LabSpec,
    RuntimeFault,
    SpecError,
    SubnetSpec,
)
from forge.runtime.local import LocalRuntime
from forge.runtime.local.build_fence import STRIPES
from forge.runtime.local.netns import create_netns
from tests.runtime.helpers import leftovers, probe, serve, sh, simple_lab, tty_send, wait_ok

from ..support.polling import until
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


def three_host_lab(lab_id: str) -> LabSpec:
    """The benchmark shape: two subnets joined by a router."""
    cmd, files = serve(8080, "srv-" + lab_id)
    return LabSpec(lab_id, [SubnetSpec("a", "10.60.1.0/24"), SubnetSpec("b", "10.60.2.0/24")], [
        HostSpec("client", networks=[("a", None)], routes=[("10.60.2.0/24", "10.60.1.254")],
                 files=files),
        HostSpec("router", networks=[("a", "10.60.1.254"), ("b", "10.60.2.254")], router=True),
        HostSpec("server", networks=[("b", None)], routes=[("default", "10.60.2.254")],
                 command=cmd, files=files),
    ])


class Boom(Exception):
    pass


@pytest.fixture()
def own(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A fresh (prefix, state dir) pair; asserts nothing of it is left at the end."""
    prefix = runtime_prefix("u")
    state = str(tmp_path / "state")
    yield prefix, state
    leaks = leftovers(prefix, state)
    if leaks:  # clean up for the next tests, then fail
        rt = LocalRuntime(state, prefix=prefix)
        for info in rt.list():
            rt.destroy(info.lab_id)
    assert leaks == []


@pytest.mark.parametrize("stage", ["lab", "switch", "host:server", "hosts", "ready"])
def test_create_is_atomic_on_injected_failure(own: tuple[str, str], stage: str) -> None:
    prefix, state = own

    def fault(at: str) -> None:
        if at == stage:
            raise Boom(at)

    rt = LocalRuntime(state, prefix=prefix, fault_hook=fault)
    with pytest.raises(Boom):
        rt.create(three_host_lab("atomic-1"))
    assert leftovers(prefix, state) == []
    assert rt.list() == []
    # The id is free again and a healthy create works.
    ok = LocalRuntime(state, prefix=prefix)
    assert ok.create(three_host_lab("atomic-1")).state == "running"
    ok.destroy("atomic-1")
    rt.close()
    ok.close()


def _mounts_under(path: str) -> list[str]:
    """Mount points of the machine's namespace at or below ``path``."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(path)]


def test_a_destroy_landing_during_a_create_leaves_nothing(own: tuple[str, str]) -> None:
    """A destroy that lands while the lab is being created (another request, an operator's
    cleanup) detached its disk; the create went on and mounted its hosts' pseudo-terminals
    on the machine's file system, where no destroy unmounted them: the state directory
    could never be removed, and every later destroy failed ("state directory could not be
    removed") with the lab left degraded for ever. The create's failure now leaves
    nothing."""
    prefix, state = own
    rt = LocalRuntime(state, prefix=prefix)

    def destroy_now(at: str) -> None:
        if at == "lab":
            rt.destroy("raced-1")

    rt._fault = destroy_now
    with pytest.raises(OSError):
        rt.create(simple_lab("raced-1"))
    assert _mounts_under(state) == []
    assert leftovers(prefix, state) == []
    assert rt.list() == []
    rt.close()


def _creators(rt: LocalRuntime, stem: str, count: int, results: dict[str, object],
              expected: type[Exception]) -> list[threading.Thread]:
    """Unstarted threads ``<stem>-<n>``, each creating lab ``<stem>-<n>`` and recording its
    state, or the ``expected`` error it raised, in ``results``."""

    def create(n: int) -> None:
        name = threading.current_thread().name = f"{stem}-{n}"
        try:
            results[name] = rt.create(simple_lab(name)).state
        except expected as exc:
            results[name] = exc

    return [threading.Thread(target=create, args=(n,)) for n in range(count)]


def _end(rt: LocalRuntime, threads: list[threading.Thread]) -> None:
    """Wait for the creating threads, destroy every lab left and close the runtime."""
    for t in threads:
        t.join(120)
    for info in rt.list():
        rt.destroy(info.lab_id)
    rt.close()


def test_fresh_builds_beyond_the_slots_wait_and_a_failed_build_frees_its_slot(
        own: tuple[str, str]) -> None:
    """With two build slots, a third and fourth create wait while two builds are under
    way (held here at their first stage); when one of those fails, its slot serves the
    two waiting creates while the other build is still held; all end as they should."""
    prefix, state = own
    lock = threading.Lock()
    inside: list[str] = []
    entered: list[str] = []
    peak = [0]
    hold = {"slot-0": threading.Event(), "slot-1": threading.Event()}

    def fault(at: str) -> None:
        me = threading.current_thread().name
        if at == "lab":
            with lock:
                inside.append(me)
                entered.append(me)
                peak[0] = max(peak[0], len(inside))
            if me in hold:
                assert hold[me].wait(120)
                if me == "slot-0":
                    with lock:
                        inside.remove(me)
                    raise Boom(me)
        elif at == "ready":
            with lock:
                inside.remove(me)

    with pytest.raises(ValueError, match="build_slots"):
        LocalRuntime(state, prefix=prefix, build_slots=0)
    rt = LocalRuntime(state, prefix=prefix, fault_hook=fault, build_slots=2)
    results: dict[str, object] = {}
    threads = _creators(rt, "slot", 4, results, Boom)
    try:
        for t in threads[:2]:
            t.start()
        until(lambda: len(entered) == 2, "both creates entered", 30)
        for t in threads[2:]:
            t.start()
        time.sleep(1.0)  # long enough for a create that did not wait to reach its build
        assert sorted(entered) == ["slot-0", "slot-1"]
        hold["slot-0"].set()  # fails: its slot serves the waiting creates, one by one
        until(lambda: len(results) == 3, "the three results", 60)
        assert "slot-1" not in results and peak[0] == 2
        hold["slot-1"].set()
        for t in threads:
            t.join(120)
        assert isinstance(results.pop("slot-0"), Boom)
        assert results == {"slot-1": "running", "slot-2": "running", "slot-3": "running"}
        assert peak[0] == 2
        assert sorted(i.lab_id for i in rt.list()) == ["slot-1", "slot-2", "slot-3"]
    finally:
        for event in hold.values():
            event.set()
        _end(rt, threads)


def test_after_stop_builds_creates_waiting_for_a_slot_build_nothing(
        own: tuple[str, str]) -> None:
    """A shutdown during a burst (``stop_builds``): the build under way finishes and its lab
    runs; the creates waiting for the one slot raise BuildsStopped when their turn comes and
    leave no lab, namespace or state behind; a later create is refused the same way."""
    prefix, state = own
    entered: list[str] = []
    hold = threading.Event()

    def fault(at: str) -> None:
        if at == "lab":
            entered.append(threading.current_thread().name)
            if threading.current_thread().name == "stop-0":
                assert hold.wait(120)

    rt = LocalRuntime(state, prefix=prefix, fault_hook=fault, build_slots=1)
    assert rt.build_slots == 1
    results: dict[str, object] = {}
    threads = _creators(rt, "stop", 3, results, BuildsStopped)
    try:
        threads[0].start()
        until(lambda: entered == ["stop-0"], "the first stop entered", 30)
        for t in threads[1:]:
            t.start()
        time.sleep(0.5)  # both wait for the slot
        assert entered == ["stop-0"] and not results
        rt.stop_builds()
        hold.set()
        for t in threads:
            t.join(120)
        assert results.pop("stop-0") == "running"
        assert sorted(results) == ["stop-1", "stop-2"]
        assert all(isinstance(r, BuildsStopped) for r in results.values())
        assert entered == ["stop-0"]  # the waiting creates never began building
        with pytest.raises(BuildsStopped):
            rt.create(simple_lab("stop-3"))
        assert [i.lab_id for i in rt.list()] == ["stop-0"]
        rt.destroy("stop-0")
        assert leftovers(prefix, state) == []
    finally:
        hold.set()
        _end(rt, threads)


def test_create_rolls_back_when_a_sandbox_cannot_start(
    own: tuple[str, str], tmp_path: Path
) -> None:
    prefix, state = own
    empty_root = tmp_path / "empty-image"
    (empty_root / "usr").mkdir(parents=True)
    rt = LocalRuntime(state, prefix=prefix, images={"broken": str(empty_root)})
    spec = LabSpec("realfail", [SubnetSpec("a", "10.61.0.0/24")], [
        HostSpec("ok", networks=[("a", None)]),
        HostSpec("bad", networks=[("a", None)], image="broken"),  # no /bin/sh in it
    ])
    with pytest.raises(RuntimeFault, match="bad"):
        rt.create(spec)
    assert leftovers(prefix, state) == []


def test_invalid_and_duplicate_specs_leave_nothing(own: tuple[str, str]) -> None:
    prefix, state = own
    rt = LocalRuntime(state, prefix=prefix)
    with pytest.raises(SpecError, match=r"hosts\[0\].networks\[0\]"):
        rt.create(LabSpec("bad-1", [SubnetSpec("a", "10.62.0.0/24")],
                          [HostSpec("h", networks=[("nope", None)])]))
    with pytest.raises(SpecError, match="allowlist_profile"):
        rt.create(LabSpec("bad-2", [SubnetSpec("a", "10.62.0.0/24")],
                          [HostSpec("h", networks=[("a", None)])],
                          egress="allowlist", allowlist_profile="unapproved"))
    assert leftovers(prefix, state) == []
    rt.create(simple_lab("dup-1"))
    with pytest.raises(LabExists):
        rt.create(simple_lab("dup-1"))
    assert [i.lab_id for i in rt.list()] == ["dup-1"]
    rt.destroy("dup-1")
    rt.destroy("dup-1")  # idempotent


def test_racing_creates_of_one_id_leave_the_winner_intact(own: tuple[str, str]) -> None:
    prefix, state = own
    instances = [LocalRuntime(state, prefix=prefix) for _ in range(4)]

    def attempt(rt: LocalRuntime) -> str:
        try:
            rt.create(simple_lab("race-1"))
            return "created"
        except LabExists:
            return "exists"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(attempt, instances))
    assert sorted(outcomes) == ["created", "exists", "exists", "exists"]
    assert [(i.lab_id, i.state) for i in instances[0].list()] == [("race-1", "running")]
    assert instances[1].exec("race-1", "box", ["true"]).exit_code == 0
    instances[2].destroy("race-1")
    for rt in instances:
        rt.close()


def test_new_instance_adopts_and_destroys_labs_after_a_crash(own: tuple[str, str]) -> None:
    prefix, state = own
    first = LocalRuntime(state, prefix=prefix)
    info = first.create(three_host_lab("crash-1"))
    first.create(simple_lab("crash-2"))
    first.close()
    del first  # the orchestrator process "crashed": only the kernel and disk remember

    second = LocalRuntime(state, prefix=prefix)
    labs = {i.lab_id: i for i in second.list()}
    assert set(labs) == {"crash-1", "crash-2"}
    assert labs["crash-1"].state == "running"
    assert labs["crash-1"].hosts == info.hosts
    server = info.hosts["server"]["b"]
    assert wait_ok(second, "crash-1", "client", server, 8080) == "ok:srv-crash-1"
    tty = second.tty("crash-1", "client")
    tty.close()

    # A lab whose host init died is reported degraded, so it can be destroyed.
    pid = second._init_pid("crash-2", "box")
    os.kill(pid, 9)
    until(lambda: second._init_pid("crash-2", "box", strict=False) == 0,
          "the killed init is gone")
    states = {i.lab_id: i.state for i in second.list()}
    assert states == {"crash-1": "running", "crash-2": "degraded"}

    # A half-built orphan (its state directory, made first, and its switch namespace) is
    # listed too; objects of this prefix with no state here are another installation's.
    os.mkdir(second.names.lab_dir("orphan-1"), 0o700)
    create_netns(f"{prefix}.orphan-1.sw")
    create_netns(f"{prefix}.theirs-1.sw")
    listed = {i.lab_id: i.state for i in second.list()}
    assert (listed["orphan-1"], listed["theirs-1"]) == ("degraded", "foreign")
    for lab in second.list():
        second.destroy(lab.lab_id)
    assert second.list() == []


def test_cleanup_orphans_carries_on_past_a_lab_it_cannot_destroy(
    own: tuple[str, str]
) -> None:
    """One orphan whose destroy fails (an immutable file in its state directory) does not
    keep the ones sorted after it: they are destroyed, the failure is raised naming the
    lab, and a later cleanup finishes it once the cause is fixed."""
    prefix, state = own
    rt = LocalRuntime(state, prefix=prefix)
    pinned = Path(rt.names.lab_dir("orph-a"), "pinned")
    try:
        rt.create(simple_lab("orph-a"))
        os.kill(rt._init_pid("orph-a", "box"), 9)  # a crash mid-teardown: no live init
        os.mkdir(rt.names.lab_dir("orph-b"), 0o700)  # a crash mid-create: its state dir
        create_netns(f"{prefix}.orph-b.sw")  # and the switch
        pinned.write_text("x")
        subprocess.run(["chattr", "+i", str(pinned)], check=True)
        end = time.monotonic() + 30
        while rt.list()[0].state != "degraded" and time.monotonic() < end:
            time.sleep(0.05)
        with pytest.raises(OSError, match=r"orph-a: .*state directory") as failed:
            rt.cleanup_orphans()
        assert "destroyed: orph-b" in str(failed.value)
        assert [i.lab_id for i in rt.list()] == ["orph-a"]
        subprocess.run(["chattr", "-i", str(pinned)], check=True)
        assert rt.cleanup_orphans() == ["orph-a"]
        assert rt.list() == []
    finally:
        subprocess.run(["chattr", "-i", str(pinned)], check=False, capture_output=True)
        rt.close()


def test_cleanup_after_a_claim_crashed_between_cgroup_renames(
    own: tuple[str, str]
) -> None:
    """A warm-pool claim marks the pool id as claimed, renames the state directory, then
    each cgroup hierarchy (pids first). A crash after the pids rename leaves the old id's
    memory/cpu trees holding the processes whose pids tree has the new name; cleanup after
    the crash (the old id sorted first, so destroyed first: its pids tree is gone; still
    this runtime's by its claim marker, though its state directory went) kills them,
    leaves nothing."""
    prefix, state = own
    rt = LocalRuntime(state, prefix=prefix)
    try:
        rt.create(simple_lab("aa-pool", command="sleep 600"))
        uid = rt.identity("aa-pool").learner
        lab_pids = rt.cgroups.pids(rt.names.lab("aa-pool"))
        assert lab_pids
        marker = Path(rt.names.claim_marker("aa-pool"))  # as pool_claim.rename_lab does
        marker.parent.mkdir(mode=0o700, exist_ok=True)
        marker.write_text("zz-claim\n")
        os.rename(rt.names.lab_dir("aa-pool"), rt.names.lab_dir("zz-claim"))
        pids_base = rt.cgroups.bases()[0]
        os.rename(os.path.join(pids_base, rt.names.lab("aa-pool")),
                  os.path.join(pids_base, rt.names.lab("zz-claim")))
        after_crash = LocalRuntime(state, prefix=prefix)
        assert sorted(after_crash.cleanup_orphans()) == ["aa-pool", "zz-claim"]
        after_crash.close()
        end = time.monotonic() + 30
        while _alive(lab_pids) and time.monotonic() < end:
            time.sleep(0.05)
        assert _alive(lab_pids) == []
        assert uid not in _uids_running()
        assert not marker.exists()
    finally:
        rt.close()


def _alive(pids: set[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie left for its parent to reap is not)."""
    alive = []
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(pid)
    return alive


def _uids_running() -> set[int]:
    """Real uids of every process on the machine."""
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, StopIteration), \
                open(f"/proc/{entry}/status", encoding="ascii") as fh:
            found.add(int(next(ln for ln in fh if ln.startswith("Uid:")).split()[1]))
    return found


def test_many_labs_leave_no_trace(own: tuple[str, str]) -> None:
    prefix, state = own
    rt = LocalRuntime(state, prefix=prefix)
    ids = [f"leak-{i}" for i in range(24)]

    def cycle(lab_id: str) -> str:
        info = rt.create(three_host_lab(lab_id))
        out = probe(rt, lab_id, "client", info.hosts["router"]["a"], 1)  # refused at once
        sh(rt, lab_id, "server", "sleep 100 & sleep 100 & echo started")
        tty = rt.tty(lab_id, "client")  # left open on purpose: destroy must close it
        tty_send(tty, b"sleep 100 &\n")
        rt.destroy(lab_id)
        return out

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(cycle, ids))
    assert results == ["err:ECONNREFUSED"] * len(ids)
    assert leftovers(prefix, state) == []
    assert rt.list() == []
    # Nothing of any lab; the build fences (a fixed set of lock files) stay for the next.
    assert os.listdir(state) == [".fence"] and len(os.listdir(f"{state}/.fence")) <= STRIPES


def test_services_start_after_the_network_is_configured(rt: LocalRuntime) -> None:
    """A host's command runs only once its interfaces, addresses and routes exist (it used
    to race them: a service adding an address or binding one failed now and then, most
    often while other labs were being created)."""
    snapshot = "ip -o -4 addr show dev eth0 > /workspace/at-start; ip route >> /workspace/at-start"
    ids = [f"netfirst-{i}" for i in range(3)]
    specs = [LabSpec(lab_id, [SubnetSpec("a", "10.60.1.0/24")], [
        HostSpec("svc", networks=[("a", "10.60.1.7")], routes=[("default", "10.60.1.254")],
                 command=snapshot),
        HostSpec("gw", networks=[("a", "10.60.1.254")], router=True),
    ]) for lab_id in ids]
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(rt.create, specs))
        for lab_id in ids:
            seen = sh(rt, lab_id, "svc", "for i in $(seq 100); do [ -s /workspace/at-start ] "
                      "&& grep -q default /workspace/at-start && break; sleep 0.05; done; "
                      "cat /workspace/at-start").stdout_text
            assert "inet 10.60.1.7/24" in seen, seen
            assert "default via 10.60.1.254 dev eth0" in seen, seen
    finally:
        for lab_id in ids:
            rt.destroy(lab_id)
