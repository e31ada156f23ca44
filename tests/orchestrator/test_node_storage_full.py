"""A lab node whose storage root's disk is full takes no new spawn until there is room.

Before, it fetched spawns it could only fail to build ("No space left on device") while
another node had room (operator drill CZ); now its pull gate stays shut while the disk is
full, the spawn waits in the queue (for another node, or for room), and the node takes it
once room is made. And a grading stopped by the full disk is graded again once there is room, not at every
reaper pass meanwhile. A real tmpfs, filled; the real orchestrator, consumer and runtime."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forge.evidence.artifact_store import COMPLETION_FILE
from forge.lifecycle import states
from forge.lifecycle.store import ScenarioNotFound
from forge.services.orchestrator import node as node_module
from forge.services.orchestrator import reaper
from forge.services.orchestrator.node import LabNode

from ..support.small_disk import fill_disk, small_tmpfs
from .conftest import MakeOrch, spawn_event

pytestmark = pytest.mark.root


@pytest.fixture()
def small_storage(tmp_path: Path) -> Iterator[Path]:
    """The orchestrator's storage root on a tmpfs of its own."""
    with small_tmpfs(tmp_path / "storage", "8m", inodes=512) as disk:
        yield disk


def test_a_node_with_a_full_disk_takes_no_spawn_until_there_is_room(
        make_orch: MakeOrch, small_storage: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(node_module, "ROOM_RECHECK_S", 0.0)  # asked at every gate poll
    orch = make_orch()
    node = orch.state.node
    assert node is not None and node.try_enter()
    node.leave()
    asked: list[bool] = []
    real = LabNode.storage_short

    def storage_short(self: LabNode) -> bool:
        asked.append(short := real(self))
        return short

    monkeypatch.setattr(LabNode, "storage_short", storage_short)
    caplog.set_level(logging.WARNING, logger="forge.orchestrator.node")
    filler = fill_disk(small_storage, inodes=True)
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish("forge.spawn.requested", event)
    deadline = time.monotonic() + 60
    while asked.count(True) < 10 and time.monotonic() < deadline:  # the gate, polled shut
        time.sleep(0.05)
    assert asked.count(True) >= 10
    # Not launched, not failed: fetched at most once as the disk filled (a fetch already
    # waiting when it filled), then back in the queue; nothing was started for it.
    with contextlib.suppress(ScenarioNotFound):
        assert orch.row(sid).state == states.PENDING
    assert not orch.runtime.list()
    assert "takes no new lab: its storage root" in caplog.text
    filler.remove()  # room made
    row = orch.wait_state(sid, states.RUNNING, states.FAILED, timeout=60)
    assert row.state == states.RUNNING, row.state_reason
    assert "has room again; it takes new labs" in caplog.text


def test_a_grading_stopped_by_a_full_disk_is_graded_again_once_there_is_room(
        make_orch: MakeOrch, small_storage: Path) -> None:
    """Drill CZ: the reaper graded such a scenario again at every pass (5 s) while the disk
    stayed full, running the lab's checks each time for nothing; now it waits for room. A
    stored result (its completion file) is published whatever the disk."""
    orch = make_orch(reaper_interval_s=3600)  # its own passes out of the way
    stuck, stored = "scn-" + "1" * 16, "scn-" + "2" * 16
    (small_storage / "scenarios" / stored).mkdir(parents=True)
    (small_storage / "scenarios" / stored / COMPLETION_FILE).write_bytes(b"{}")
    long_ago = datetime.now(UTC) - reaper.STUCK_GRADING - timedelta(minutes=1)
    now = datetime.now(UTC)
    assert reaper._grading_due(orch.state, stuck, long_ago, now, [])
    filler = fill_disk(small_storage, inodes=True)
    assert not reaper._grading_due(orch.state, stuck, long_ago, now, [])
    assert reaper._grading_due(orch.state, stored, long_ago, now, [])
    filler.remove()
    assert reaper._grading_due(orch.state, stuck, long_ago, now, [])
