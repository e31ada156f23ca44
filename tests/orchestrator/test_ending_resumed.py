"""A delete or expiry cut short by the orchestrator's death ends as asked at the restart.

Before (probe AZ): `DELETE /v1/scenarios/<id>` tears the lab down and then records the
end; an orchestrator killed between the two left the row `running` beside half a lab, and
the next start failed it "damaged while the orchestrator was down": the learner who had
deleted the lab found a failure on record. After: the end asked for is kept beside the
scenario before the teardown starts (`forge.lifecycle.ending`), and the restart finishes it.

What a kill -9 in the teardown leaves is set up directly (the kept end, a host of the lab
gone, the row untouched): the orchestrator here runs inside the test process.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from forge.lifecycle import states
from forge.lifecycle.ending import ENDING_FILE, ending_of, record_ending
from forge.runtime.local.netns import remove_netns
from forge.scenario_paths import scenario_dir
from forge.services.orchestrator import grade_lab
from forge.store.models import Scenario

from ..support.postgres import PostgresCluster, set_read_only
from .conftest import OPERATOR, MakeOrch, Orch, running_lab, spawn_event


def _cut_host(orch: Orch, scenario_id: str) -> None:
    """One host of the lab gone, as a teardown cut short leaves it."""
    host = sorted(orch.row(scenario_id).details["hosts"])[0]
    remove_netns(orch.runtime.names.host_ns(scenario_id, host))


def test_a_restart_finishes_the_end_under_way_and_fails_only_what_was_damaged(
        make_orch: MakeOrch) -> None:
    first = make_orch(reaper_interval_s=3600)
    deleted, expiring, damaged = running_lab(first), running_lab(first), running_lab(first)
    root = first.settings.storage_root
    first.stop()
    record_ending(root, deleted, states.DELETED, "deleted on request")
    _cut_host(first, deleted)  # killed in the middle of tearing it down
    record_ending(root, expiring, states.EXPIRED, "time limit reached")  # killed before
    _cut_host(first, damaged)  # nobody asked for an end: damaged while down

    second = make_orch(reaper_interval_s=3600)
    row = second.wait_state(deleted, states.DELETED, states.FAILED, timeout=30)
    assert (row.state, row.state_reason) == (states.DELETED, "deleted on request")
    row = second.wait_state(expiring, states.EXPIRED, states.FAILED, timeout=30)
    assert (row.state, row.state_reason) == (states.EXPIRED, "time limit reached")
    row = second.wait_state(damaged, states.FAILED, timeout=30)
    assert "damaged" in (row.state_reason or "")
    assert not {deleted, expiring, damaged} & {i.lab_id for i in second.runtime.list()}
    for sid in (deleted, expiring):  # kept only until the row records the end
        assert not (scenario_dir(root, sid) / ENDING_FILE).exists()


def test_a_delete_keeps_no_end_behind_and_a_bad_kept_end_is_ignored(orch: Orch) -> None:
    sid = running_lab(orch)
    with orch.client() as c:
        got = c.delete(f"/v1/scenarios/{sid}", headers=OPERATOR)
    assert got.status_code == 200, got.text
    assert orch.row(sid).state == states.DELETED
    assert ending_of(orch.settings.storage_root, sid) is None
    # Whatever else is found there (cut short, hand-edited, an end no teardown has) is no
    # end under way: the usual recovery applies.
    path = scenario_dir(orch.settings.storage_root, sid) / ENDING_FILE
    for text in (b'{"target": "completed", "reason": "x"}', b'{"target": "deleted"',
                 b'["deleted", "x"]', b'{"target": "deleted", "reason": 7}'):
        path.write_bytes(text)
        assert ending_of(orch.settings.storage_root, sid) is None


def test_a_redelivered_spawn_ends_a_deleted_launch_instead_of_building_it(orch: Orch) -> None:
    """Review: a lab left `launching` whose delete was under way was rebuilt by the spawn
    event coming back (or the reaper's resume) and marked running for the learner who
    had deleted it."""
    event = spawn_event(orch.settings)
    orch.publish("forge.spawn.requested", event)
    sid = str(event["scenario_id"])
    orch.wait_state(sid, states.RUNNING)
    with orch.state.ctx.db.session() as sess:  # as the crash left it: launching, end kept
        sess.execute(update(Scenario).where(Scenario.scenario_id == sid)
                     .values(state=states.LAUNCHING))
    record_ending(orch.settings.storage_root, sid, states.DELETED, "deleted on request")
    orch.publish("forge.spawn.requested", event)  # redelivered
    row = orch.wait_state(sid, states.DELETED, states.RUNNING, timeout=30)
    assert (row.state, row.state_reason) == (states.DELETED, "deleted on request")
    assert sid not in {i.lab_id for i in orch.runtime.list()}


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_delete_the_store_cut_short_is_finished_by_the_reaper(
        orch: Orch, postgres_cluster: PostgresCluster, db_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The store stopped taking writes (a failover) between the lab's teardown and the
    row's end: the delete is 503 and the row still `running`. Before, nothing finished it
    until its deadline, then the reaper graded the torn-down lab and failed it ("the lab
    was lost during grading"): the learner who deleted it found a failure on record."""
    sid = running_lab(orch)
    real = grade_lab.teardown_lab

    def teardown_then_failover(state: Any, scenario_id: str) -> None:
        real(state, scenario_id)
        set_read_only(postgres_cluster, db_url, True)

    monkeypatch.setattr(grade_lab, "teardown_lab", teardown_then_failover)
    with orch.client() as c:
        got = c.delete(f"/v1/scenarios/{sid}", headers=OPERATOR)
    monkeypatch.setattr(grade_lab, "teardown_lab", real)
    set_read_only(postgres_cluster, db_url, False)
    assert got.status_code == 503, got.text
    assert got.json()["error"] == "store_unavailable"
    assert orch.row(sid).state == states.RUNNING  # nothing of the end recorded
    row = orch.wait_state(sid, states.DELETED, states.FAILED, timeout=30)
    assert (row.state, row.state_reason) == (states.DELETED, "deleted on request")
    assert ending_of(orch.settings.storage_root, sid) is None
