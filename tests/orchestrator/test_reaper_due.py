"""Which scenarios one reaper pass acts on, on both store engines: a running lab past its
deadline, a pending or launching one that has not moved for too long, a grading one whose
completion is written but unpublished or that has stalled. The store returns only rows
that may be due, so a class of labs before their deadline costs the pass nothing; the
decisions are the same as reading every live row. A SQLite store with no live scenario is
not read again until something is committed to it."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from forge.lifecycle import states
from forge.services.orchestrator.reaper import (
    STUCK_AFTER,
    STUCK_GRADING,
    STUCK_LAUNCHING,
    _due,
    due_now,
    reap_once,
)
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Scenario
from forge.store.sqlite_files import store_sqlite_file

NOW = datetime.now(UTC)
US = timedelta(microseconds=1)
ROWS: dict[str, tuple[str, timedelta, timedelta | None]] = {
    # id: (state, updated this long ago, expires in (None: no deadline))
    "run-expired": (states.RUNNING, timedelta(minutes=30), -timedelta(seconds=1)),
    "run-live": (states.RUNNING, timedelta(minutes=30), timedelta(minutes=5)),
    "run-no-deadline": (states.RUNNING, timedelta(hours=5), None),
    "pending-stuck": (states.PENDING, timedelta(minutes=11), None),
    "pending-fresh": (states.PENDING, timedelta(minutes=9), None),
    "launch-stuck": (states.LAUNCHING, timedelta(minutes=3), None),
    "launch-fresh": (states.LAUNCHING, timedelta(seconds=30), None),
    "grade-stalled": (states.GRADING, timedelta(minutes=2), None),
    "grade-fresh": (states.GRADING, timedelta(seconds=5), None),
    "grade-written": (states.GRADING, timedelta(seconds=5), None),
    "ended-expired": (states.DELETED, timedelta(hours=1), -timedelta(hours=1)),
    "other-node-expired": (states.RUNNING, timedelta(minutes=30), -timedelta(seconds=1)),
    "other-node-written": (states.GRADING, timedelta(seconds=5), None),
    "nobody-pending-stuck": (states.PENDING, timedelta(minutes=11), None),
    # exactly at each limit: due; a microsecond short of it: not yet
    "run-at-deadline": (states.RUNNING, timedelta(minutes=30), timedelta(0)),
    "run-before-deadline": (states.RUNNING, timedelta(minutes=30), US),
    "pending-at-limit": (states.PENDING, STUCK_AFTER, None),
    "pending-short": (states.PENDING, STUCK_AFTER - US, None),
    "launch-at-limit": (states.LAUNCHING, STUCK_LAUNCHING, None),
    "launch-short": (states.LAUNCHING, STUCK_LAUNCHING - US, None),
    "grade-at-limit": (states.GRADING, STUCK_GRADING, None),
    "grade-short": (states.GRADING, STUCK_GRADING - US, None),
}
MINE = [("run-expired", states.RUNNING), ("pending-stuck", states.PENDING),
        ("launch-stuck", states.LAUNCHING), ("grade-stalled", states.GRADING),
        ("grade-written", states.GRADING), ("run-at-deadline", states.RUNNING),
        ("pending-at-limit", states.PENDING), ("launch-at-limit", states.LAUNCHING),
        ("grade-at-limit", states.GRADING)]


def _id(name: str) -> str:
    """The scenario id of row `name` (a real one: the reaper builds paths from it)."""
    return "scn-" + hashlib.sha256(name.encode()).hexdigest()[:16]


NAMES = {_id(name): name for name in ROWS}


def _add(sess: Any, name: str, state: str, ago: timedelta, expires: timedelta | None) -> None:
    sid = _id(name)
    sess.add(Scenario(scenario_id=sid, request_id="r-" + name, tenant_id="acme",
                      subject="alice", track="netplus", template_id="lab-netplus",
                      template_sha256="0" * 64, plan="PRO", retention_days=30, state=state,
                      created_at=NOW - ago, updated_at=NOW - ago, details={},
                      expires_at=None if expires is None else NOW + expires,
                      node_id=_node(name)))


def _node(name: str) -> str | None:
    if name.startswith("other-node"):
        return "n2"
    return None if name.startswith("nobody") else "n1"


@pytest.mark.parametrize("leader", [True, False])
def test_one_pass_acts_on_exactly_the_due_scenarios(db_url: str, tmp_path: Path,
                                                     leader: bool) -> None:
    """This node's due labs; a row of no node (a queued spawn) only on the lease holder;
    another node's never (its completion file here or not). ``now`` in any zone."""
    upgrade(db_url)
    db = Database(db_url)
    try:
        with db.session() as sess:
            for sid, (state, ago, expires) in ROWS.items():
                _add(sess, sid, state, ago, expires)
        for name in ("grade-written", "other-node-written"):
            written = tmp_path / "scenarios" / _id(name)
            written.mkdir(parents=True)
            (written / "completion.json").write_text("{}")
        node = SimpleNamespace(node_id="n1", leader=leader)
        reaper = SimpleNamespace(ctx=SimpleNamespace(db=db), node=node,
                                 settings=SimpleNamespace(storage_root=tmp_path))
        due = [(NAMES[sid], st) for sid, st in _due(reaper, NOW)]  # type: ignore[arg-type]
        india = NOW.astimezone(timezone(timedelta(hours=5, minutes=30)))
        elsewhere = [(NAMES[sid], st)
                     for sid, st in _due(reaper, india)]  # type: ignore[arg-type]
    finally:
        db.dispose()
    expected = MINE + ([("nobody-pending-stuck", states.PENDING)] if leader else [])
    assert sorted(due) == sorted(expected)
    assert sorted(elsewhere) == sorted(expected)


def test_a_row_the_reaper_cannot_read_holds_back_no_other_lab(db_url: str,
                                                              tmp_path: Path) -> None:
    """A grading row whose id is not a scenario id (written by hand, or by a bug) is
    skipped, and every other due lab still expires in the same pass."""
    upgrade(db_url)
    db = Database(db_url)
    try:
        with db.session() as sess:
            _add(sess, "run-expired", states.RUNNING, timedelta(minutes=30),
                 -timedelta(seconds=1))
            sess.add(Scenario(scenario_id="../../etc", request_id="r-bad", tenant_id="acme",
                              subject="alice", track="netplus", template_id="lab-netplus",
                              template_sha256="0" * 64, plan="PRO", retention_days=30,
                              state=states.GRADING, created_at=NOW, updated_at=NOW,
                              details={}, expires_at=None, node_id="n1"))
        reaper = SimpleNamespace(ctx=SimpleNamespace(db=db),
                                 node=SimpleNamespace(node_id="n1", leader=True),
                                 settings=SimpleNamespace(storage_root=tmp_path),
                                 reaper_skipped=set())
        due = _due(reaper, NOW)  # type: ignore[arg-type]
        again = _due(reaper, NOW)  # type: ignore[arg-type]
    finally:
        db.dispose()
    assert due == again == [(_id("run-expired"), states.RUNNING)]
    assert reaper.reaper_skipped == {"../../etc"}  # named once, by this orchestrator


async def test_an_idle_store_is_not_read_again_until_a_commit(db_url: str,
                                                              tmp_path: Path) -> None:
    """With no live scenario in a SQLite store, reaper passes do not read it again until
    something is committed (an idle orchestrator read it every 5 s, its largest idle
    cost); a lab committed meanwhile is read at the next pass and expires at its deadline
    as before. PostgreSQL: every pass reads."""
    upgrade(db_url)
    db = Database(db_url)
    reads: list[int] = []
    read = db.read

    def counted() -> Any:
        reads.append(1)
        return read()

    async def blocking(fn: Any, *args: Any) -> Any:
        return fn(*args)

    db.read = counted  # type: ignore[method-assign]
    reaper = SimpleNamespace(ctx=SimpleNamespace(db=db), blocking=blocking,
                             node=SimpleNamespace(node_id="n1", leader=True),
                             settings=SimpleNamespace(storage_root=tmp_path),
                             reaper_skipped=set(), reaper_version=None,
                             reaper_saw_none=False, unnoticed_checked_at=time.monotonic(),
                             ends_under_way=set())
    sqlite = store_sqlite_file(db_url) is not None
    try:
        per_pass = []
        for _ in range(3):  # an empty store
            before = len(reads)
            assert await reap_once(reaper) == 0  # type: ignore[arg-type]
            per_pass.append(len(reads) - before)
        assert per_pass[0] > 0
        assert per_pass[1:] == ([0, 0] if sqlite else per_pass[:1] * 2)
        with db.session() as sess:  # a lab before its deadline: read on every pass
            _add(sess, "run-live", states.RUNNING, timedelta(minutes=1), timedelta(hours=1))
        for _ in range(2):
            before = len(reads)
            assert await due_now(reaper) == []  # type: ignore[arg-type]
            assert len(reads) > before
        with db.session() as sess:
            _add(sess, "run-expired", states.RUNNING, timedelta(minutes=30),
                 -timedelta(seconds=1))
        assert await due_now(reaper) == [  # type: ignore[arg-type]
            (_id("run-expired"), states.RUNNING)]
    finally:
        if reaper.reaper_version is not None:
            reaper.reaper_version.close()
        db.dispose()
