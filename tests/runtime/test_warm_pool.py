"""Warm lab pools of the local engine: a claimed lab is the scenario's own lab, pools refill,
fall back to a fresh create when empty, shrink under memory pressure, and leave nothing
behind at shutdown. Pools of one lab, so the whole module costs a few lab creates."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabInfo, LabSpec, SpecError, SubnetSpec
from forge.runtime.local import LocalRuntime, warm_pool
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.warm import (
    MAX_RETRY_S,
    MemoryReading,
    PoolRetries,
    may_refill,
    pool_shape,
    pressed,
    read_memory,
    shape_key,
)
from forge.templates.dsl_limits import MAX_EXEC_STRING_BYTES
from tests.runtime.helpers import leftovers

from ..support.configured_runtime import configured_runtime
from ..support.images import ensure_default_image
from ..support.one_lab import own_runtime, pool_lab
from ..support.polling import until
from ..support.prefixes import runtime_prefix

CALM = MemoryReading(available_mb=1 << 20, stall_avg10=0.0)
STARVED = MemoryReading(available_mb=10, stall_avg10=None)
GLIBC_RESERVED = (1 << 31) | (1 << 32)  # NPTL's own signals (see test_launch)


def lab(lab_id: str, secret: str = "", subnet: str = "10.203.0.0/24") -> LabSpec:
    """Two hosts on one subnet; ``secret`` lands in an environment variable, a seeded file
    and what the service writes (the per-scenario values)."""
    personal: dict[str, object] = {}
    if secret:
        personal = {"environment": {"FLAG": secret},
                    "files": {"/home/notes.txt": f"note {secret}\n"},
                    "command": 'echo "svc $FLAG" > /srv/service.txt; exec sleep 1000'}
    return LabSpec(lab_id, [SubnetSpec("lan", subnet)],
                   [HostSpec("box", networks=[("lan", None)], **personal),  # type: ignore[arg-type]
                    HostSpec("peer", networks=[("lan", None)])])


class Memory:
    """The pressure seam: what the pool reads instead of /proc."""

    def __init__(self) -> None:
        self.reading = CALM
        self.reads = 0

    def __call__(self) -> MemoryReading:
        self.reads += 1
        return self.reading


@pytest.fixture(scope="module")
def memory() -> Memory:
    return Memory()


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory, memory: Memory) -> Iterator[LocalRuntime]:
    """A runtime of its own (other tests' labs never meet this pool) with one pool of 1."""
    rt = LocalRuntime(str(tmp_path_factory.mktemp("warm")), prefix=runtime_prefix("w"))
    rt.warm({"two": (lab("x"), 1)}, probe=memory, quiet_s=0.05, poll_s=0.1)
    yield rt
    rt.warm({})
    for info in rt.list():
        rt.destroy(info.lab_id)
    rt.close()


def ready(rt: LocalRuntime) -> int:
    assert rt.warm_pool is not None
    return rt.warm_pool.status()["two"]["ready"]


def test_claimed_lab_is_the_scenarios_own_and_the_pool_refills(pooled: LocalRuntime) -> None:
    rt = pooled
    assert rt.warm_pool is not None
    until(lambda: ready(rt) == 1, "the pool never filled")
    pool_id = rt.warm_pool.ready_ids()[0]
    secret = secrets.token_hex(8)
    info = rt.create(lab("scn-00000000000000b1", secret))
    assert rt.warm_pool.stats.claimed == 1
    assert info.lab_id == "scn-00000000000000b1" and info.state == "running"
    assert info.hosts == {"box": {"lan": "10.203.0.1"}, "peer": {"lan": "10.203.0.2"}}
    # The pool lab is gone under its own id (its old namespace names are dropped in the
    # background): it *is* the scenario's lab now.
    until(lambda: pool_id not in {i.lab_id for i in rt.list()}, "the pool id stayed")
    # Its claim marker (what kept the pool id's remains this runtime's meanwhile) went too.
    assert not os.path.exists(rt.names.claim_marker(pool_id))
    assert {i.lab_id: i.state for i in rt.list()}["scn-00000000000000b1"] == "running"
    out = rt.exec(info.lab_id, "box", shell='cat /home/notes.txt; echo "env $FLAG"; id -un')
    assert out.stdout_text == f"note {secret}\nenv {secret}\nlearner\n"
    until(lambda: rt.exec(info.lab_id, "box", ["cat", "/srv/service.txt"]).stdout_text
          == f"svc {secret}\n", "the personalised service never ran")
    addrs = rt.exec(info.lab_id, "peer", shell="ip -o -4 addr show").stdout_text
    assert "10.203.0.2/24" in addrs
    # Sealing for grading ends learner processes, not the personalised service.
    rt.seal(info.lab_id)
    checked = rt.run_check(info.lab_id, "box", ["/bin/cat", "/srv/service.txt"])
    assert checked.stdout_text == f"svc {secret}\n"
    until(lambda: ready(rt) == 1, "the pool was not refilled after a claim")
    assert rt.warm_pool.ready_ids() != [pool_id]  # a new lab, never the claimed one
    rt.destroy(info.lab_id)
    assert all(i.lab_id != info.lab_id for i in rt.list())


def test_pooled_service_starts_with_default_signals(pooled: LocalRuntime) -> None:
    """A claimed pool lab's service has no signal ignored or blocked, like a fresh lab's,
    even when the runtime's process ignores SIGINT/SIGQUIT (a shell's background job)."""
    rt = pooled
    assert rt.warm_pool is not None
    until(lambda: ready(rt) == 1, "the pool never filled")
    claimed = rt.warm_pool.stats.claimed
    base = lab("scn-00000000000000b5")
    spec = dataclasses.replace(base, hosts=[dataclasses.replace(
        base.hosts[0], command="grep -E '^Sig(Ign|Blk)' /proc/self/status > /srv/status; "
                               "exec sleep 1000"), *base.hosts[1:]])
    ignored = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    try:
        info = rt.create(spec)
    finally:
        for sig, old in ignored.items():
            signal.signal(sig, old)
    try:
        assert rt.warm_pool.stats.claimed == claimed + 1
        until(lambda: rt.exec(info.lab_id, "box", ["cat", "/srv/status"]).stdout_text
              .count("\n") == 2, "the service never wrote its status")
        out = rt.exec(info.lab_id, "box", ["cat", "/srv/status"]).stdout_text
        fields = dict(line.split(":\t") for line in out.splitlines())
        assert int(fields["SigIgn"], 16) & ~GLIBC_RESERVED == 0
        assert int(fields["SigBlk"], 16) & ~GLIBC_RESERVED == 0
    finally:
        rt.destroy(info.lab_id)


def test_refill_waits_after_a_claim(pooled: LocalRuntime) -> None:
    """A claim's caller (the orchestrator recording the lab running, the next claim) never
    shares the process with a refill build started by that claim: the build waits."""
    rt = pooled
    assert rt.warm_pool is not None
    until(lambda: ready(rt) == 1, "the pool never filled")
    built = rt.warm_pool.stats.built
    rt.warm_pool.settle_s = 3600.0
    info = None
    try:
        info = rt.create(lab("scn-00000000000000b7", "s"))
        time.sleep(0.3)  # several refill rounds (poll 0.1 s): none builds after a claim
        assert ready(rt) == 0 and rt.warm_pool.stats.built == built
    finally:
        rt.warm_pool.settle_s = 0.0
        if info is not None:
            rt.destroy(info.lab_id)
    until(lambda: ready(rt) == 1, "the pool did not refill once the claim had settled")


def test_service_values_beyond_one_exec_are_refused_before_a_claim(pooled: LocalRuntime) -> None:
    """A pooled lab starts its service after it reports running, so a value the kernel
    would refuse at exec (E2BIG) must be refused before: the create fails naming the
    field and the pool keeps its lab. The largest value accepted reaches the service."""
    rt = pooled
    assert rt.warm_pool is not None
    until(lambda: ready(rt) == 1, "the pool never filled")
    claimed = rt.warm_pool.stats.claimed
    base = lab("scn-00000000000000b8", "s")
    room = MAX_EXEC_STRING_BYTES - len("FGE_FLAG=")  # as an exec carries it

    def with_flag(value: str) -> LabSpec:
        box = dataclasses.replace(base.hosts[0], environment={"FLAG": value},
                                  command='echo "${#FLAG}" > /srv/length; exec sleep 1000')
        return dataclasses.replace(base, hosts=[box, *base.hosts[1:]])

    with pytest.raises(SpecError) as refused:
        rt.create(with_flag("x" * (room + 1)))
    assert refused.value.field == "hosts[0].environment.FLAG"
    assert rt.warm_pool.stats.claimed == claimed and ready(rt) == 1
    assert base.lab_id not in {i.lab_id for i in rt.list()}
    info = rt.create(with_flag("x" * room))
    try:
        assert rt.warm_pool.stats.claimed == claimed + 1
        until(lambda: rt.exec(info.lab_id, "box", ["cat", "/srv/length"]).stdout_text
              == f"{room}\n", "the service never started with the largest value")
    finally:
        rt.destroy(info.lab_id)


def test_other_shape_or_empty_pool_builds_fresh(pooled: LocalRuntime) -> None:
    rt = pooled
    assert rt.warm_pool is not None
    before = rt.warm_pool.stats.claimed
    other = rt.create(lab("scn-00000000000000b2", "s", subnet="10.204.0.0/24"))
    assert rt.warm_pool.stats.claimed == before  # another shape: not from the pool
    assert rt.exec(other.lab_id, "box", ["cat", "/home/notes.txt"]).stdout_text == "note s\n"
    rt.destroy(other.lab_id)
    until(lambda: ready(rt) == 1, "the pool never filled")
    first = rt.create(lab("scn-00000000000000b3", "a"))
    second = rt.create(lab("scn-00000000000000b4", "b"))  # the pool (of 1) is empty now
    assert rt.warm_pool.stats.missed >= 1
    for info, secret in ((first, "a"), (second, "b")):
        out = rt.exec(info.lab_id, "box", shell='cat /home/notes.txt; echo "$FLAG"')
        assert out.stdout_text == f"note {secret}\n{secret}\n"
        rt.destroy(info.lab_id)


def test_pool_shrinks_under_memory_pressure_and_refills_after(
        pooled: LocalRuntime, memory: Memory) -> None:
    rt = pooled
    assert rt.warm_pool is not None
    until(lambda: ready(rt) == 1, "the pool never filled")
    memory.reading = STARVED
    try:
        until(lambda: ready(rt) == 0, "the pool kept its lab under memory pressure")
        until(lambda: not [i for i in rt.list() if i.lab_id.startswith("wp-")],
              "the shrunk lab was not destroyed")
        assert rt.warm_pool.stats.shrunk >= 1
        time.sleep(0.3)  # several refill rounds: none builds while memory is short
        assert ready(rt) == 0
    finally:
        memory.reading = CALM
    until(lambda: ready(rt) == 1, "the pool did not refill once memory was back")


def test_after_stalls_shrank_the_pool_it_refills_only_once_they_calm_down(
        pooled: LocalRuntime, memory: Memory) -> None:
    """Stalls over the threshold while memory is getting short shrink the pool. Before,
    any stall under the threshold let it build again: a stall hovering near the threshold
    built and destroyed a lab pass after pass. A refill now waits for stalls at half of it."""
    rt = pooled
    pool = rt.warm_pool
    assert pool is not None
    until(lambda: ready(rt) == 1, "the pool never filled")
    built = pool.stats.built
    try:
        memory.reading = MemoryReading(available_mb=1500, stall_avg10=12.0)
        until(lambda: ready(rt) == 0, "stalls with memory short did not shrink the pool")
        memory.reading = MemoryReading(available_mb=1500, stall_avg10=7.0)
        start = memory.reads
        until(lambda: memory.reads >= start + 10, "the refill loop stopped")
        assert ready(rt) == 0 and pool.stats.built == built
    finally:
        memory.reading = MemoryReading(available_mb=1500, stall_avg10=2.0)
    until(lambda: ready(rt) == 1, "the pool did not refill once stalls calmed down")
    memory.reading = CALM


def test_pool_labs_are_torn_down_at_shutdown(tmp_path: Path) -> None:
    prefix = runtime_prefix("w")
    rt = LocalRuntime(str(tmp_path), prefix=prefix)
    try:
        rt.warm({"two": (lab("x"), 3)}, quiet_s=0.05, poll_s=0.1)
        until(lambda: ready(rt) == 3, "the pool never filled")
        # A smaller size drops the extra ready labs (destroyed together) and keeps one.
        assert rt.warm({"two": (lab("x"), 1)})["two"] == {"ready": 1, "size": 1}
        assert len([i for i in rt.list() if i.lab_id.startswith("wp-")]) == 1
        rt.warm({"two": (lab("x"), 3)}, quiet_s=0.05, poll_s=0.1)
        until(lambda: ready(rt) == 3, "the pool never filled again")
        assert leftovers(prefix, str(tmp_path))  # the pool labs exist...
        assert rt.warm({}) == {}  # the drain: every ready lab at once
        assert leftovers(prefix, str(tmp_path)) == []  # ...and are gone: netns, cgroups, procs
        assert rt._held_go == {}  # and the pipes their waiting inits read are closed
        rt.warm({"two": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1)
        until(lambda: ready(rt) == 1, "the pool never filled again")
    finally:
        rt.close()  # the orchestrator's shutdown path (also the cleanup of a failed test)
    assert leftovers(prefix, str(tmp_path)) == []


def test_a_short_pool_stops_refilling_once_builds_stop(tmp_path: Path) -> None:
    """After ``stop_builds`` (a shutdown under way) a pool below its size stops refilling:
    one refused build ends its refill thread, instead of a create and a teardown tried
    again and again until the pools are torn down; the ready lab stays claimable until then,
    and the teardown leaves nothing."""
    prefix = runtime_prefix("w")
    rt = LocalRuntime(str(tmp_path), prefix=prefix)
    tried: list[str] = []
    real_create = rt.create

    def create(spec: LabSpec) -> LabInfo:
        tried.append(spec.lab_id)
        return real_create(spec)

    rt.create = create  # type: ignore[method-assign]
    try:
        rt.warm({"two": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1)
        until(lambda: ready(rt) == 1, "the pool never filled")
        rt.stop_builds()
        rt.warm({"two": (lab("x"), 2)}, quiet_s=0.05, poll_s=0.1)
        until(lambda: len(tried) == 2, "the refill never tried the second lab")
        time.sleep(1.0)  # ten refill polls
        assert len(tried) == 2
        assert rt.warm_pool is not None and rt.warm_pool.status()["two"]["ready"] == 1
        assert rt.warm({}) == {}
    finally:
        rt.close()
    assert leftovers(prefix, str(tmp_path)) == []


def test_shape_and_pressure_rules() -> None:
    base = lab("scn-00000000000000b5", "one")
    assert shape_key(base) == shape_key(lab("scn-00000000000000b6", "two"))
    assert shape_key(base) != shape_key(lab("scn-00000000000000b6", "two", "10.9.0.0/24"))
    shape = pool_shape(base)
    assert shape.lab_id == "" and all(not (h.environment or h.files or h.command)
                                      for h in shape.hosts)
    assert pressed(MemoryReading(100, None), 512, 10.0)
    assert pressed(MemoryReading(1500, 25.0), 512, 10.0)  # stalling, and memory getting short
    assert not pressed(MemoryReading(1500, 0.5), 512, 10.0)
    # Stalls with plenty available: a lab reclaiming inside its own memory limit (the
    # machine-wide PSI counts it) must not drain the node's pools.
    assert not pressed(MemoryReading(20_000, 32.0), 512, 10.0)
    # Refilling needs a margin over the floor, and stalls well under the threshold.
    assert not may_refill(MemoryReading(600, None), 512, 10.0)
    assert may_refill(MemoryReading(700, None), 512, 10.0)
    assert not may_refill(MemoryReading(1500, 7.0), 512, 10.0)
    assert may_refill(MemoryReading(1500, 4.0), 512, 10.0)
    assert may_refill(MemoryReading(20_000, 32.0), 512, 10.0)
    # At the line where stalls stop counting (4 floors, 2048 MiB), a build must not take
    # memory back under it with stalls still high: the margin applies there too.
    assert not pressed(MemoryReading(2050, 12.0), 512, 10.0)
    assert not may_refill(MemoryReading(2050, 12.0), 512, 10.0)
    assert may_refill(MemoryReading(2600, 12.0), 512, 10.0)
    retries = PoolRetries(1.0)
    retries.failed("p", now=0.0)
    retries.failed("p", now=0.0)
    assert not retries.due("p", 1.5) and retries.due("p", 2.0) and retries.due("q", 0.0)
    for _ in range(20):
        retries.failed("p", now=0.0)
    assert retries.due("p", MAX_RETRY_S)  # the wait stops doubling at its cap
    retries.succeeded("p")
    assert retries.due("p", 0.0)
    assert read_memory().available_mb > 0


def test_a_pool_fills_at_once_on_a_machine_just_booted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The monotonic clock counts from boot: the pool's "no claim yet" and "no miss yet"
    must not read as a claim and a miss at time 0, or a long settle or quiet time (here an
    hour, 5 s after boot) would hold the first fill back for the rest of that time."""
    real = time.monotonic
    offset = real() - 5.0
    # The pool's own clock only (a process-wide patch would move every other clock of this
    # test process, asyncio loops' included).
    clock = types.SimpleNamespace(monotonic=lambda: real() - offset)
    monkeypatch.setattr(warm_pool, "time", clock)
    rt = LocalRuntime(str(tmp_path), prefix=runtime_prefix("w"))
    try:
        rt.warm({"two": (lab("x", subnet="10.204.0.0/24"), 1)}, quiet_s=3600, poll_s=0.1,
                settle_s=3600)
        until(lambda: rt.warm_pool is not None
              and rt.warm_pool.status()["two"]["ready"] == 1, "the pool never filled")
    finally:
        rt.warm({})
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()
    assert leftovers(rt.names.prefix, str(tmp_path)) == []


def _pool_ids(rt: LocalRuntime) -> list[str]:
    return sorted(i.lab_id for i in rt.list() if i.lab_id.startswith("wp-"))


def test_a_pool_built_for_an_older_tree_is_replaced(tmp_path: Path) -> None:
    """Ready labs are matched by a key that includes the hosts' resolved root trees; an
    image rebuilt gets a new content-addressed tree, so labs built before it never match
    again. They must not sit in the pool for ever looking like a full pool (no refill,
    every spawn a miss): the first create that misses with a key no pool has makes the
    pool recompute its key, destroy the stale labs and refill. Here the tree path changes
    ("/" to "/.", the same userland) as a rebuilt image's does. A create of another shape
    is not counted as a pool miss (it would hold refills back)."""
    prefix = runtime_prefix("w")
    rt = LocalRuntime(str(tmp_path), prefix=prefix)
    try:
        rt.warm({"two": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1)
        until(lambda: ready(rt) == 1, "the pool never filled")
        assert rt.warm_pool is not None
        stale = _pool_ids(rt)
        other = rt.create(lab("scn-00000000000000c0", "o", subnet="10.205.0.0/24"))
        assert rt.warm_pool.stats.missed == 0  # not a pooled shape: no miss
        rt.destroy(other.lab_id)
        rt.rootfs = "/."  # the tree a claim resolves now is another path
        fresh = rt.create(lab("scn-00000000000000c1", "a"))
        assert rt.warm_pool.stats.claimed == 0  # the stale lab is not the scenario's
        rt.destroy(fresh.lab_id)
        until(lambda: ready(rt) == 1 and _pool_ids(rt) not in ([], stale),
              "the stale pool lab was never replaced")
        assert not set(stale) & set(_pool_ids(rt))
        claimed = rt.create(lab("scn-00000000000000c2", "b"))
        assert rt.warm_pool.stats.claimed == 1
        out = rt.exec(claimed.lab_id, "box", shell='cat /home/notes.txt; echo "$FLAG"')
        assert out.stdout_text == "note b\nb\n"
        rt.destroy(claimed.lab_id)
    finally:
        rt.close()
        for info in rt.list():  # a failed assertion leaves no lab behind
            rt.destroy(info.lab_id)
    assert leftovers(prefix, str(tmp_path)) == []


def test_pools_are_off_where_cgroups_cannot_be_moved(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A claim moves the pool lab's cgroups to the scenario's name; where a cgroup cannot
    even be made there (here: a cgroup root that does not exist), every claim would fail
    and cost a pool build and a teardown more than a fresh build. Pools are off, said once
    in the log, and creates build fresh. (cgroup v2, which refuses a rename, is served by
    a migration: tests/runtime/test_pool_cgroup2.py.)"""
    rt = LocalRuntime(str(tmp_path), prefix=runtime_prefix("w"))
    rt._require()  # usable as it is; only the pool's probe meets the missing root
    real = rt.cgroups
    rt.cgroups = Cgroups(1, str(tmp_path / "no-cgroups-here"))
    try:
        with caplog.at_level(logging.WARNING, logger="forge.runtime.warm_pool"):
            assert rt.warm({"two": (lab("x"), 2)}, quiet_s=0.05, poll_s=0.1) == {}
        assert rt.warm_pool is not None and rt.warm_pool.off_reason is not None
        assert "cannot be moved" in rt.warm_pool.off_reason
        assert "warm pools are off on this node" in caplog.text
        time.sleep(0.3)  # several refill polls: nothing is built
        assert _pool_ids(rt) == []
    finally:
        rt.cgroups = real
        rt.close()


def test_at_the_memory_floor_the_pool_neither_flaps_nor_floods_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each ready lab here takes 50 MiB of 700 available, the floor is 512. Before, the
    pool filled until one more lab pressed memory, then destroyed it, which freed enough
    to build it again: a build and a teardown every pass, for ever, with a WARNING each.
    Now a refill needs a margin above the floor: the pool holds what fits and stays put;
    a real drop shrinks it (one WARNING for the episode) and it refills once memory is back."""
    rt = LocalRuntime(str(tmp_path / "state"), prefix=runtime_prefix("w"))
    passes = [0]
    starved = [False]

    def probe() -> MemoryReading:
        passes[0] += 1
        pool = rt.warm_pool
        held = len(pool.ready_ids()) if pool is not None else 0
        return MemoryReading(400 if starved[0] else 700 - 50 * held, None)

    def settle(count: int = 30) -> None:  # that many more passes of the refill loop
        start = passes[0]
        until(lambda: passes[0] >= start + count, "the refill loop stopped")

    caplog.set_level(logging.INFO, logger="forge.runtime.warm_pool")
    try:
        rt.warm({"p": (lab("x"), 5)}, probe=probe, min_available_mb=512, quiet_s=0.05,
                poll_s=0.05)
        pool = rt.warm_pool
        assert pool is not None
        until(lambda: len(pool.ready_ids()) == 2, "the pool never filled what fits")
        settle()
        assert (len(pool.ready_ids()), pool.stats.built, pool.stats.shrunk) == (2, 2, 0)
        starved[0] = True
        until(lambda: not pool.ready_ids(), "the pool never shrank under pressure")
        settle()
        assert pool.stats.shrunk == 2 and pool.stats.built == 2
        warned = [r for r in caplog.records
                  if r.levelno == logging.WARNING and "memory pressure" in r.getMessage()]
        assert len(warned) == 1, [r.getMessage() for r in warned]
        starved[0] = False
        until(lambda: len(pool.ready_ids()) == 2, "the pool never refilled")
        assert any("refilling warm pools" in r.getMessage() for r in caplog.records)
    finally:
        rt.warm({})
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()


def test_a_seed_the_image_refuses_is_the_templates_error_not_a_pool_failure(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A root seed at a path that is a directory in the host's image is the template's
    mistake, found while personalising a claimed pool lab. Before, the pool logged it as
    its own failure (an ERROR with a traceback), counted it, and built the lab fresh, which
    refused it the same way. Now the SpecError goes straight to the caller."""
    ensure_default_image()

    def imaged(lab_id: str, files: dict[str, str] | None = None) -> LabSpec:
        return LabSpec(lab_id, [SubnetSpec("lan", "10.204.0.0/24")],
                       [HostSpec("box", networks=[("lan", None)], image="base",
                                 files=files or {})])

    caplog.set_level(logging.INFO, logger="forge.runtime.warm_pool")
    with configured_runtime(tmp_path, runtime_prefix("v")) as rt:
        assert isinstance(rt, LocalRuntime)
        try:
            rt.warm({"p": (imaged("x"), 1)}, quiet_s=0.05, poll_s=0.1)
            pool = rt.warm_pool
            assert pool is not None
            until(lambda: len(pool.ready_ids()) == 1, "the pool never filled")
            with pytest.raises(SpecError) as refused:
                rt.create(imaged("scn-00000000000000b3", {"/usr/bin": "not a directory\n"}))
            assert "/usr/bin" in str(refused.value)
            assert pool.stats.failed == 0
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert "scn-00000000000000b3" not in {i.lab_id for i in rt.list()}
        finally:
            rt.warm({})


def test_an_operator_sees_the_pools_in_the_metrics(pooled: LocalRuntime, tmp_path: Path) -> None:
    """The orchestrator's /metrics exports each pool's ready labs and size and what
    happened to pool labs (claims, misses, builds, failures, shrinks), read from the
    runtime at each scrape; a runtime without pools exports none of it."""
    from prometheus_client import CollectorRegistry, generate_latest

    from forge.services.orchestrator.pool_metrics import register_pool_metrics

    until(lambda: ready(pooled) == 1, "the pool never filled")
    registry = CollectorRegistry()
    register_pool_metrics(registry, pooled.pool_report)
    text = generate_latest(registry).decode()
    assert "forge_warm_pool_enabled 1.0" in text
    assert 'forge_warm_pool_ready{pool="two"} 1.0' in text
    assert 'forge_warm_pool_size{pool="two"} 1.0' in text
    assert pooled.warm_pool is not None
    built = pooled.warm_pool.stats.built
    assert f'forge_warm_pool_labs_total{{event="built"}} {float(built)}' in text
    assert 'forge_warm_pool_labs_total{event="exposed"} 0.0' in text
    bare = LocalRuntime(str(tmp_path / "bare"), prefix="wb")
    try:
        empty = CollectorRegistry()
        register_pool_metrics(empty, bare.pool_report)
        assert "forge_warm_pool" not in generate_latest(empty).decode()
    finally:
        bare.close()


def test_a_learners_lab_gets_the_uid_pair_a_ready_pool_lab_held(tmp_path: Path) -> None:
    """Red team CB: each ready pool lab holds a uid pair. With the range's last free pairs
    held by ready labs, a learner's lab of another shape failed with "no free lab uid":
    the pool held what the learner needed. Now one ready lab is destroyed for it."""
    with own_runtime(tmp_path / "state", uid_pairs=1) as rt:
        rt.warm({"one": (lab("x"), 1)}, quiet_s=0.05, poll_s=0.1)
        waited = pool_lab(rt)
        held = rt.identity(waited)
        mine = rt.create(lab("scn-00000000000000c1", "c", subnet="10.205.0.0/24"))
        assert rt.identity(mine.lab_id) == held
        assert waited not in {info.lab_id for info in rt.list()}
        assert rt.warm_pool is not None and rt.warm_pool.stats.claimed == 0
        out = rt.exec(mine.lab_id, "box", shell='cat /home/notes.txt; echo "$FLAG"')
        assert out.stdout_text == "note c\nc\n"
