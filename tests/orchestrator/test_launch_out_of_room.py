"""A launch left in ``launching`` while the node's storage disk is full is built once room is
made, not failed. An operator drill (a lab node's storage root on a small tmpfs, filled
during a spawn): every resume counted an attempt before its audit note met ENOSPC, so the
attempts were used up while nothing could be built, and the first resume after the disk
was cleared failed the scenario with "lab could not be built in 3 attempts (interrupted)".
A real tmpfs, filled; the real orchestrator, reaper and runtime."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from forge.lifecycle import states
from forge.services.orchestrator import reaper
from forge.services.orchestrator.launch_resume import MAX_LAUNCH_ATTEMPTS
from forge.services.orchestrator.node import LabNode

from ..support.small_disk import fill_disk, small_tmpfs
from .conftest import MakeOrch, spawn_event

pytestmark = pytest.mark.root


@pytest.fixture()
def small_storage(tmp_path: Path) -> Iterator[Path]:
    """The orchestrator's storage root on a tmpfs of its own (the runtime and the store are
    elsewhere, as on a node whose storage disk alone fills)."""
    with small_tmpfs(tmp_path / "storage", "8m", inodes=512) as disk:
        yield disk


def test_a_launch_on_a_full_disk_is_built_once_there_is_room(
        make_orch: MakeOrch, small_storage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    orch = make_orch()
    monkeypatch.setattr(reaper, "STUCK_LAUNCHING", timedelta(0))  # resumed at each pass
    real_resume = reaper.resume_launch
    resumed: list[str] = []

    async def resume_launch(state: Any, scenario_id: str) -> str:
        try:
            return await real_resume(state, scenario_id)
        finally:
            resumed.append(scenario_id)

    monkeypatch.setattr(reaper, "resume_launch", resume_launch)
    # The node took the spawn just before its disk filled (a node fetches no new spawn
    # on a full disk: tests/orchestrator/test_node_storage_full.py).
    monkeypatch.setattr(LabNode, "storage_short", lambda self: False)
    filler = fill_disk(small_storage, inodes=True)
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish("forge.spawn.requested", event)
    orch.wait_state(sid, states.LAUNCHING, states.RUNNING, states.FAILED)
    # More reaper passes on the full disk than a launch has attempts.
    deadline = time.monotonic() + 60
    while resumed.count(sid) < MAX_LAUNCH_ATTEMPTS + 2 and time.monotonic() < deadline:
        row = orch.row(sid)
        assert row.state == states.LAUNCHING, row.state_reason  # not failed for the disk
        time.sleep(0.1)
    assert resumed.count(sid) >= MAX_LAUNCH_ATTEMPTS + 2
    row = orch.row(sid)
    assert row.state == states.LAUNCHING, row.state_reason
    assert int(row.details.get("launch_attempts", 1)) == 1  # nothing built, nothing counted
    filler.remove()  # room made
    row = orch.wait_state(sid, states.RUNNING, states.FAILED)
    assert row.state == states.RUNNING, row.state_reason
    assert sid in {i.lab_id for i in orch.runtime.list()}
