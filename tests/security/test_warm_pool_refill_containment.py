"""Attack: starve every warm pool by making one pool's builds fail, or break the lab a
spawn is about to claim.

The refill thread builds one lab at a time for the first pool short of its size. If a
pool whose labs cannot be built (its image gone from the cache, a shape the machine can
no longer make, a resource one template's labs exhaust) were always picked first, no
other pool would ever refill: one broken template would turn every pooled spawn on the
node into a slow fresh build. A failing pool is retried later, with a growing wait, and
the other pools fill meanwhile; the failures leave nothing behind. And a ready lab that
died while it waited (its host's init killed: an OOM kill under memory pressure, a host
agent) fails its claim: the spawn gets a lab built fresh, as its own, and the broken lab
is destroyed with its uid pair; nothing of it is left, nor a second lab held."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.reconcile import init_pid
from tests.runtime.helpers import leftovers

from ..support.prefixes import runtime_prefix
from ..support.proc import alive


def missing_image(name: str) -> str:
    """The image resolver of a cache that lost the image."""
    raise FileNotFoundError(f"image {name} is not built (forge images build {name})")


def lab(image: str | None = None, lab_id: str = "x", flag: str = "") -> LabSpec:
    personal: dict[str, object] = {}
    if flag:
        personal = {"environment": {"FLAG": flag}, "command": "exec sleep 1000"}
    return LabSpec(lab_id, [SubnetSpec("lan", "10.211.0.0/24")],
                   [HostSpec("box", networks=[("lan", None)], image=image,
                             **personal)])  # type: ignore[arg-type]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(str(tmp_path), prefix=runtime_prefix("c"),
                      resolve_image=missing_image)
    try:
        yield rt
    finally:
        rt.close()
        for info in rt.list():
            rt.destroy(info.lab_id)


def test_a_pool_that_cannot_be_built_does_not_starve_the_others(
        runtime: LocalRuntime, tmp_path: Path) -> None:
    rt = runtime
    # The broken pool is named first: the refill meets it before the good one each round.
    rt.warm({"broken": (lab("gone"), 2), "good": (lab(), 2)}, quiet_s=0.05, poll_s=0.1)
    assert rt.warm_pool is not None
    end = time.monotonic() + 60
    while rt.warm_pool.status()["good"]["ready"] < 2:
        assert time.monotonic() < end, "the good pool never filled behind the broken one"
        time.sleep(0.05)
    assert rt.warm_pool.stats.failed >= 1  # the broken pool was tried...
    assert rt.warm_pool.status()["broken"]["ready"] == 0
    failed = rt.warm_pool.stats.failed
    time.sleep(1.0)  # ...and is retried with a growing wait, not at every round
    assert rt.warm_pool.stats.failed - failed <= 3
    rt.warm({})
    assert leftovers(rt.names.prefix, str(tmp_path)) == []


def test_a_pool_lab_that_died_before_its_claim_gives_way_to_a_fresh_lab(
        runtime: LocalRuntime, tmp_path: Path) -> None:
    rt = runtime
    rt.warm({"good": (lab(), 1)}, quiet_s=0.05, poll_s=0.1, settle_s=3600)
    assert rt.warm_pool is not None
    end = time.monotonic() + 60
    while not rt.warm_pool.ready_ids():
        assert time.monotonic() < end, "the pool never filled"
        time.sleep(0.05)
    (dead,) = rt.warm_pool.ready_ids()
    pid = init_pid(rt.names, dead, "box")
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 10  # a kill is delivered, not done, when os.kill returns
    while alive(pid):
        assert time.monotonic() < end, "the killed init is still running"
        time.sleep(0.02)
    scenario = "scn-00000000000000a7"
    rt.create(lab(lab_id=scenario, flag="mine"))
    assert rt.warm_pool.stats.failed == 1 and rt.warm_pool.stats.claimed == 0
    assert rt.exec(scenario, "box", shell='echo "$FLAG"').stdout_text == "mine\n"
    # settle_s (an hour) holds the refill back: the scenario's lab is the only lab, with one
    # uid pair.
    assert [info.lab_id for info in rt.list()] == [scenario]
    mine = [d for d in rt.uids.claimed().values() if d.startswith(str(tmp_path))]
    assert mine == [rt.names.lab_dir(scenario)]
    rt.destroy(scenario)
    rt.warm({})
    assert leftovers(rt.names.prefix, str(tmp_path)) == []
