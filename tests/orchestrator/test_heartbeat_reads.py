"""What one node heartbeat reads of the store (`read_placed`), on both store engines: the
labs placed on this node that it does not count yet, the counted labs that ended (with the
reason, so a lab failed as this node's loss is destroyed here), and every other node's live
labs (for the lost-node sweep) — in one read transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from forge.config.settings import load_settings
from forge.lifecycle import states
from forge.services.orchestrator.node import (
    LabNode,
    PlacedLabs,
    lab_memory_mb,
    lost_deleted_reason,
    lost_reason,
    read_placed,
)
from forge.store.data_version import DataVersion
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Scenario
from forge.templates.registry import TemplateRegistry

from ..services.conftest import prod_environ

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "templates"
TEMPLATE = "lab-netplus"


def _row(sess: Session, sid: str, state: str, node: str | None, reason: str = "x") -> None:
    now = datetime.now(UTC)
    sess.add(Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id="acme",
                      subject="alice", track="netplus", template_id=TEMPLATE,
                      template_sha256="0" * 64, plan="PRO", retention_days=30, state=state,
                      state_reason=reason, created_at=now, updated_at=now, details={},
                      node_id=node))


def test_one_read_gives_adopted_ended_and_elsewhere(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    registry = TemplateRegistry.load(FIXTURES)
    try:
        with db.session() as sess:
            _row(sess, "scn-held", states.RUNNING, "n1")
            _row(sess, "scn-new", states.LAUNCHING, "n1")
            _row(sess, "scn-done", states.DELETED, "n1", "deleted by learner")
            _row(sess, "scn-lost", states.FAILED, "n1", lost_reason("n1"))
            _row(sess, "scn-other", states.RUNNING, "n2")
            _row(sess, "scn-other-grading", states.GRADING, "n2")
            _row(sess, "scn-other-ended", states.COMPLETED, "n2")
            _row(sess, "scn-nobody", states.RUNNING, None)
        held = ["scn-held", "scn-done", "scn-lost", "scn-gone"]
        placed = read_placed(db, registry, "n1", held)
    finally:
        db.dispose()
    # only what the node does not count yet, with its memory
    assert placed.adopted == {"scn-new": lab_memory_mb(registry, TEMPLATE)}
    assert placed.adopted["scn-new"] > 0
    # the counted labs that ended, with the reason; a row that is gone or live is not ended
    assert sorted(placed.ended) == [("scn-done", "deleted by learner"),
                                    ("scn-lost", lost_reason("n1"))]
    # other nodes' live labs, with their state; rows naming no node are nobody's here
    assert {k: sorted(v) for k, v in placed.elsewhere.items()} == {
        "n2": [("scn-other", states.RUNNING), ("scn-other-grading", states.GRADING)]}


def test_a_steady_node_adopts_and_drops_nothing(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    try:
        with db.session() as sess:
            _row(sess, "scn-a", states.RUNNING, "n1")
        placed = read_placed(db, TemplateRegistry.load(FIXTURES), "n1", ["scn-a"])
    finally:
        db.dispose()
    assert placed.adopted == {} and placed.ended == [] and placed.elsewhere == {}


def test_a_lab_released_during_the_read_is_not_counted_again(tmp_path: Path) -> None:
    """The read ran while the lab was still live; it ended and was released before the
    heartbeat applied the read: counting it again would hold a slot for nothing until the
    next heartbeat (a spawn turned away meanwhile)."""
    settings = load_settings(prod_environ(tmp_path))
    node = LabNode(settings=settings, registry=TemplateRegistry.load(FIXTURES))
    node.released_since_read.clear()  # the heartbeat's read begins
    node.reserve("scn-ended", 64)
    node.release("scn-ended")  # ends while the read is running
    placed = PlacedLabs(adopted={"scn-ended": 64, "scn-found": 64}, ended=[], elsewhere={})
    assert node.resync(placed) == []
    assert node.held == {"scn-found": 64}


def test_a_node_back_from_loss_destroys_its_labs_failed_or_deleted_meanwhile(
        tmp_path: Path) -> None:
    """Those the lease holder ended as this node's loss, failed or (their delete kept for
    the node) deleted, are handed back for destroying; one ended by this node is not."""
    settings = load_settings(prod_environ(tmp_path))
    node = LabNode(settings=settings, registry=TemplateRegistry.load(FIXTURES))
    for sid in ("scn-failed", "scn-deleted", "scn-done"):
        node.reserve(sid, 64)
    ended = [("scn-failed", lost_reason(node.node_id)),
             ("scn-deleted", lost_deleted_reason(node.node_id)),
             ("scn-done", "deleted on request")]
    assert node.resync(PlacedLabs(adopted={}, ended=ended, elsewhere={})) == [
        "scn-deleted", "scn-failed"]
    assert node.held == {}


def _heartbeat(node: LabNode, db: Database, registry: TemplateRegistry) -> tuple[bool, PlacedLabs]:
    """What `sweeper.heartbeat_once` does with the store: (whether it read, what it applied)."""
    node.released_since_read.clear()
    placed = node.settled()
    read = placed is None
    if placed is None:
        placed = read_placed(db, registry, node.node_id, frozenset(node.held))
    node.resync(placed)
    node.resynced(placed)
    return read, placed


def test_an_idle_node_reads_the_store_only_after_a_commit_or_a_change_of_its_labs(
        db_url: str, tmp_path: Path) -> None:
    """Issue 19: an idle orchestrator's heartbeat read the store every 2 s though nothing had
    changed. On SQLite a heartbeat skips the read while nothing was committed (by any
    process) and its labs are as the last read left them; it still finds a commit at the
    next heartbeat. PostgreSQL has no cheap change counter: every heartbeat reads."""
    upgrade(db_url)
    db, other = Database(db_url), Database(db_url)  # `other`: another process's writes
    registry = TemplateRegistry.load(FIXTURES)
    settings = load_settings({**prod_environ(tmp_path), "FORGE_NODE_ID": "n1"})
    node = LabNode(settings=settings, registry=registry, store_version=DataVersion(db_url))
    skips = db_url.startswith("sqlite")
    try:
        with other.session() as sess:
            _row(sess, "scn-a", states.RUNNING, "n1")
            _row(sess, "scn-b", states.RUNNING, "n2")
        assert _heartbeat(node, db, registry)[0]
        assert set(node.held) == {"scn-a"}
        for _ in range(3):  # idle: the same labs, here and elsewhere, without a read
            read, placed = _heartbeat(node, db, registry)
            assert read is not skips
            assert set(node.held) == {"scn-a"}
            assert placed.elsewhere == {"n2": [("scn-b", states.RUNNING)]}
        with other.session() as sess:  # committed elsewhere: found at the next heartbeat
            _row(sess, "scn-c", states.LAUNCHING, "n1")
        assert _heartbeat(node, db, registry)[0]
        assert set(node.held) == {"scn-a", "scn-c"}
        assert _heartbeat(node, db, registry)[0] is not skips
        node.release("scn-a")  # its labs changed with nothing committed: read again
        assert _heartbeat(node, db, registry)[0]
        assert _heartbeat(node, db, registry)[0] is not skips
    finally:
        node.store_version.close() if node.store_version is not None else None
        db.dispose()
        other.dispose()
