"""Reconciliation on a node's start with rows written before lab nodes (no node named).

Before: every node counted such a row as its own, so a newly added node-2 judged node-1's
running lab "lost" (not in node-2's runtime) and failed it while it ran on node-1, and
graded node-1's grading row against a runtime without its lab.
After: a row naming no node is this node's only when its lab is in this node's runtime (or
it is the one node); the others are left to the node that has the lab and the lease holder.
"""

from __future__ import annotations

from sqlalchemy import update

from forge.lifecycle import states
from forge.lifecycle.store import move
from forge.services.orchestrator import grade_lab
from forge.services.orchestrator.reaper import reconcile
from forge.store.models import Scenario

from ..support.polling import until
from .conftest import MakeOrch, Orch, running_lab
from .test_nodes import GRACE


def _as_before_nodes(orch: Orch, *scenario_ids: str) -> None:
    """What migration 0002 leaves on rows written before nodes: no node id, no URL."""
    with orch.state.ctx.db.session() as sess:
        sess.execute(update(Scenario).where(Scenario.scenario_id.in_(scenario_ids))
                     .values(node_id=None, node_url=None))


def test_a_new_node_leaves_another_nodes_pre_upgrade_labs_alone(make_orch: MakeOrch) -> None:
    n1 = make_orch(FORGE_NODE_ID="n1", reaper_interval_s=3600, **GRACE)
    running, grading = running_lab(n1), running_lab(n1)
    move(n1.state.ctx.db, n1.settings.storage_root, grading, states.GRADING, "submitted")
    _as_before_nodes(n1, running, grading)

    n2 = make_orch(FORGE_NODE_ID="n2", reaper_interval_s=3600, **GRACE)
    report = reconcile(n2.state)
    assert running not in report["lost"] and grading not in report["lost"]
    assert report["adopted"] == [] and report["destroyed"] == []
    # Both labs still run on n1, untouched by n2's start.
    assert n1.row(running).state == states.RUNNING
    assert n1.row(grading).state == states.GRADING
    assert {running, grading} <= {info.lab_id for info in n1.runtime.list()}

    # n1 has them in its runtime: they are its own, and it claims them.
    mine = reconcile(n1.state)
    assert sorted(mine["adopted"]) == sorted([running, grading]) and mine["lost"] == []
    assert n1.row(running).node_id == "n1" and n1.row(grading).node_id == "n1"


def test_a_node_back_from_loss_destroys_the_labs_failed_meanwhile(make_orch: MakeOrch) -> None:
    """Before: a node cut off from the bus for longer than the grace period came back to
    find its labs failed by the lease holder; it dropped them from its capacity but left
    them running (until its next restart). After: its next heartbeat destroys them."""
    n1 = make_orch(FORGE_NODE_ID="n1", reaper_interval_s=3600, **GRACE)
    lost, kept = running_lab(n1), running_lab(n1)
    node = n1.state.node
    assert node is not None
    until(lambda: {lost, kept} <= set(node.held), "n1 holds both labs")
    # What the lease holder's sweep writes while n1 is judged lost (fail_lost_nodes).
    move(n1.state.ctx.db, n1.settings.storage_root, lost, states.FAILED, "lab node n1 lost",
         expected=states.RUNNING, details={"lost_node": "n1"})
    until(lambda: lost not in {info.lab_id for info in n1.runtime.list()},
          "the failed lab destroyed on n1", timeout_s=20)
    assert lost not in node.held and kept in node.held
    assert kept in {info.lab_id for info in n1.runtime.list()}
    assert n1.row(kept).state == states.RUNNING


def test_start_destroys_every_orphan_lab_and_adopts_the_live_one(make_orch: MakeOrch) -> None:
    """Labs in the runtime without a live scenario (a crashed run's ended labs, its warm
    pool) are all destroyed at start, together; the live lab is adopted and keeps running."""
    n1 = make_orch(FORGE_NODE_ID="n1", reaper_interval_s=3600, **GRACE)
    live, ended_a, ended_b = running_lab(n1), running_lab(n1), running_lab(n1)
    for sid in (ended_a, ended_b):  # rows ended while their labs stayed (a crash between)
        with n1.state.ctx.db.session() as sess:
            sess.execute(update(Scenario).where(Scenario.scenario_id == sid)
                         .values(state=states.FAILED))
    report = reconcile(n1.state)
    assert sorted(report["destroyed"]) == sorted([ended_a, ended_b])
    assert report["adopted"] == [live] and report["lost"] == []
    assert {info.lab_id for info in n1.runtime.list()} == {live}
    assert n1.row(live).state == states.RUNNING


def test_a_node_back_from_loss_discards_the_stored_result_of_a_scenario_failed_meanwhile(
        make_orch: MakeOrch) -> None:
    """Review BB: a result stored while the bus was away (the lab graded, the completion
    not yet published), then failed by the lease holder as the node's loss: the scenario is
    final and never resumed, so its answers, tokens and recordings in `completion.json`,
    the pack and `evidence/` stayed on the node for ever. Now the heartbeat that destroys
    the lab removes them too."""
    n1 = make_orch(FORGE_NODE_ID="n1", reaper_interval_s=3600, **GRACE)
    sid = running_lab(n1)
    node = n1.state.node
    assert node is not None
    until(lambda: sid in node.held, "n1 holds the lab")
    move(n1.state.ctx.db, n1.settings.storage_root, sid, states.GRADING, "submitted")
    grade_lab._grade_and_store(n1.state, sid, "submitted")  # stored; the bus "away"
    kept = n1.settings.storage_root / "scenarios" / sid
    assert (kept / "completion.json").exists() and (kept / "evidence").is_dir()
    move(n1.state.ctx.db, n1.settings.storage_root, sid, states.FAILED, "lab node n1 lost",
         expected=states.GRADING, details={"lost_node": "n1"})
    until(lambda: sid not in {info.lab_id for info in n1.runtime.list()},
          "the failed lab destroyed on n1", timeout_s=20)
    assert not (kept / "completion.json").exists() and not (kept / "evidence").exists()
    assert (kept / "audit.jsonl").exists()  # its audit log is kept, as for every scenario
