"""Which scenarios one reaper pass acts on, on both store engines: a running lab past its
deadline, a pending or launching one that has not moved for too long, a grading one whose
completion is written but unpublished or that has stalled. The store returns only rows
that may be due, so a class of labs before their deadline costs the pass nothing; the
decisions are the same as reading every live row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from forge.lifecycle import states
from forge.services.orchestrator.reaper import _due
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Scenario

NOW = datetime.now(UTC)
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
}


def _add(sess: Any, sid: str, state: str, ago: timedelta, expires: timedelta | None) -> None:
    sess.add(Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id="acme",
                      subject="alice", track="netplus", template_id="lab-netplus",
                      template_sha256="0" * 64, plan="PRO", retention_days=30, state=state,
                      created_at=NOW - ago, updated_at=NOW - ago, details={},
                      expires_at=None if expires is None else NOW + expires,
                      node_id="n2" if sid.startswith("other-node") else "n1"))


def test_one_pass_acts_on_exactly_the_due_scenarios(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    db = Database(db_url)
    try:
        with db.session() as sess:
            for sid, (state, ago, expires) in ROWS.items():
                _add(sess, sid, state, ago, expires)
        written = tmp_path / "scenarios" / "grade-written"
        written.mkdir(parents=True)
        (written / "completion.json").write_text("{}")
        node = SimpleNamespace(node_id="n1", leader=True)
        reaper = SimpleNamespace(ctx=SimpleNamespace(db=db), node=node,
                                 settings=SimpleNamespace(storage_root=tmp_path))
        due = _due(reaper, NOW)  # type: ignore[arg-type]
    finally:
        db.dispose()
    assert sorted(due) == sorted([
        ("run-expired", states.RUNNING), ("pending-stuck", states.PENDING),
        ("launch-stuck", states.LAUNCHING), ("grade-stalled", states.GRADING),
        ("grade-written", states.GRADING)])
