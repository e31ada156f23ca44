"""`build_lab` when a shutdown refuses its create (``BuildsStopped``) after the launch was
cancelled: the `stopped` callback runs once, and its own failure (the store gone at
shutdown) never takes the place of the cancellation, which the reaper and the restart's
resume rely on to end. The orchestrator state is a stand-in: only what this path touches."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from forge.runtime import BuildsStopped, LabSpec, SubnetSpec
from forge.services.orchestrator.launch_build import build_lab


@pytest.mark.parametrize("callback_fails", [False, True])
def test_a_cancelled_launch_whose_create_was_refused_stays_cancelled(
        callback_fails: bool) -> None:
    async def scenario() -> tuple[bool, int]:
        release = asyncio.Event()
        calls = []

        async def building(_fn: Any, _spec: Any) -> Any:
            await release.wait()
            raise BuildsStopped("the runtime is stopping")

        async def stopped() -> None:
            calls.append(1)
            if callback_fails:
                raise RuntimeError("cannot schedule new futures after shutdown")

        state = SimpleNamespace(building=building, runtime=SimpleNamespace(create=None))
        spec = LabSpec("scn-00000000000000aa", [SubnetSpec("a", "10.9.0.0/24")], [])
        task = asyncio.ensure_future(build_lab(state, spec, "PRO", "lab-x",  # type: ignore[arg-type]
                                               stopped=stopped))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        release.set()  # the create, refused, ends
        await asyncio.wait({task}, timeout=10)
        return task.cancelled(), len(calls)

    assert asyncio.run(scenario()) == (True, 1)
