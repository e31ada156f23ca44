"""The reaper's kernel-table trims (KERNEL_TRIMS) run on a node that holds a lab, and not
on one that holds none: every trim looks only at the labs in the runtime's state
directory, so there each found nothing, yet an idle orchestrator ran all seven on its
thread pool every pass (seven thread hops and the machine-wide neighbour and conntrack
reads every 5 s). Counted, not timed, on a real LocalRuntime."""

from __future__ import annotations

import asyncio
import builtins
import collections
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from forge.runtime.local.runtime import LocalRuntime
from forge.services.orchestrator.reaper import KERNEL_TRIMS, trim_kernel_tables

from ..support.prefixes import runtime_prefix

TRIMS = ("trim_neighbours", "trim_conntrack", "trim_traffic_control", "trim_nexthops",
         "trim_address_labels", "trim_routes", "trim_listen_queues")


class CountingRuntime(LocalRuntime):
    """LocalRuntime, counting each trim it is asked for."""

    calls: collections.Counter[str]

    def __getattribute__(self, name: str) -> Any:
        found = super().__getattribute__(name)
        if name in TRIMS:
            def counted(*args: Any, _f: Callable[..., Any] = found) -> Any:
                self.calls[name] += 1
                result: builtins.list[tuple[str, str, int]] = _f(*args)
                return result
            return counted
        return found


def _pass(runtime: LocalRuntime) -> None:
    async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)
    state = SimpleNamespace(runtime=runtime, blocking=blocking)
    asyncio.run(trim_kernel_tables(state))  # type: ignore[arg-type]


def test_trims_run_only_while_the_node_holds_a_lab(tmp_path: Path) -> None:
    assert len(KERNEL_TRIMS) == len(TRIMS)
    runtime = CountingRuntime(str(tmp_path / "state"), runtime_prefix("t"))
    runtime.calls = collections.Counter()

    _pass(runtime)  # no state directory yet
    os.makedirs(runtime.names.state_dir)
    (tmp_path / "state" / "not-a-lab").mkdir()  # what is not a lab's entry is not a lab
    _pass(runtime)
    assert not runtime.holds_labs() and runtime.calls == {}

    os.mkdir(runtime.names.lab_dir("lab-1"))  # one lab (a pool lab counts as one too)
    assert runtime.holds_labs()
    _pass(runtime)
    _pass(runtime)
    assert runtime.calls == {name: 2 for name in TRIMS}
