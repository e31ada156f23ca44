"""Attempts of an assignment: what a learner could do with request ids and given-back
attempts, on a real store (SQLite and PostgreSQL).

1. Reusing an old request id. Spawn answers a request id as a retry only while its replay
   record lives (24 h). Before: the attempt taken by that id counted as "this request's"
   for ever, so a day later the same id started a brand-new lab past the window and past
   the attempts, on the old attempt. After: an id older than the replay record is a new
   request: judged and counted.
2. A given-back attempt left a gap in the numbers. Before: the next number was the count
   plus one, which after a gap is a number still held, so every later start hit the key
   and was refused with an empty reason although attempts remained. After: numbers go on
   from the highest taken.
3. Times with a zone other than UTC. Before: SQLite dropped the offset, moving the window
   by it. After: stored in UTC, read back the same instant.
4. A lab the platform failed to launch (it could not be built). Before: it used its
   attempt, so with one allowed the learner was refused ("all 1 attempts ... are used") and
   the dashboard said 1 of 1, though they never had a lab; only raising the whole class's
   attempts let them start again. After: a lab failed before it ever ran uses no attempt
   (the spawn gate's count, the learner's list, the next take and the dashboard); one
   that ran counts, however it ended.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from forge.classroom import assignments as asg
from forge.classroom import attempts, cohorts, dashboard
from forge.classroom.cohorts import Manager
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import AssignmentAttempt, Cohort, Scenario, ScenarioTransition

ANN = Manager("acme", "ann", "instructor")


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def _assignment(db: Database, attempts: int, opens: datetime, closes: datetime) -> str:
    cohort: Cohort = cohorts.create_cohort(db, ANN, "Networking 101")
    row = asg.create_assignment(db, ANN, cohort.cohort_id, template_id="netplus",
                                opens_at=opens, closes_at=closes, attempts_allowed=attempts,
                                hints_allowed=False, known_templates={"netplus"})
    return row.assignment_id


def test_an_old_request_id_is_a_new_attempt(db: Database) -> None:
    now = datetime.now(UTC)
    aid = _assignment(db, 1, now - timedelta(days=3), now + timedelta(days=3))
    assert attempts.take_attempt(db, aid, "lea", "req-1", 1) == (1, True)
    attempts.settle_attempt(db, aid, "lea", 1, "scn-00000000000000c1")
    assert attempts.take_attempt(db, aid, "lea", "req-1", 1) == (1, False)  # a retry today
    with db.session() as sess:  # two days later: spawn no longer answers req-1 as a retry
        sess.execute(update(AssignmentAttempt).values(at=now - timedelta(days=2)))
    assert attempts.attempt_of_request(db, aid, "lea", "req-1") is None
    assert attempts.take_attempt(db, aid, "lea", "req-1", 1) is None  # its one attempt is used


def test_a_given_back_attempt_never_blocks_the_ones_left(db: Database) -> None:
    now = datetime.now(UTC)
    aid = _assignment(db, 3, now - timedelta(minutes=1), now + timedelta(hours=1))
    assert attempts.take_attempt(db, aid, "lea", "tab-1", 3) == (1, True)
    assert attempts.take_attempt(db, aid, "lea", "tab-2", 3) == (2, True)
    attempts.settle_attempt(db, aid, "lea", 1, None)  # tab 1 lost the race for a lab slot
    attempts.settle_attempt(db, aid, "lea", 2, "scn-00000000000000c2")
    assert attempts.take_attempt(db, aid, "lea", "later", 3) == (3, True)
    assert attempts.take_attempt(db, aid, "lea", "last", 3) == (4, True)  # the third one used
    assert attempts.take_attempt(db, aid, "lea", "more", 3) is None


def test_a_window_given_in_another_zone_keeps_its_instant(db: Database) -> None:
    plus2 = timezone(timedelta(hours=2))
    opens = datetime(2030, 5, 1, 9, 0, tzinfo=plus2)
    aid = _assignment(db, 1, opens, opens + timedelta(hours=2))
    found = asg.applicable(db, "acme", "ann", "netplus", None, datetime.now(UTC))
    assert found is None  # ann is not enrolled; read the stored row instead
    with db.read() as sess:
        row = sess.get(asg.Assignment, aid)
        assert row is not None
        assert asg.iso(row.opens_at) == "2030-05-01T07:00:00Z"
        assert asg.iso(row.closes_at) == "2030-05-01T09:00:00Z"


def _lab_that_went(db: Database, sid: str, *moves: str) -> None:
    """A lab of lea's (netplus) that went from pending through ``moves``."""
    at = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Scenario(scenario_id=sid, request_id=f"req-{sid}", tenant_id="acme",
                          subject="lea", track="netplus", template_id="netplus", plan="PRO",
                          retention_days=7, state=moves[-1], state_reason="x",
                          created_at=at, updated_at=at, details={}))
        sess.flush()
        for before, state in zip(("pending", *moves), moves, strict=False):
            sess.add(ScenarioTransition(scenario_id=sid, from_state=before, to_state=state,
                                        reason="the lab could not be built", at=at))


def test_a_lab_that_failed_before_it_ran_uses_no_attempt(db: Database) -> None:
    now = datetime.now(UTC)
    aid = _assignment(db, 1, now - timedelta(minutes=1), now + timedelta(hours=1))
    cid = _row(db, aid).cohort_id
    cohorts.enrol_subjects(db, ANN, cid, ["lea"])
    assert attempts.take_attempt(db, aid, "lea", "req-scn-00000000000000f1", 1) == (1, True)
    _lab_that_went(db, "scn-00000000000000f1", "launching", "failed")
    attempts.settle_attempt(db, aid, "lea", 1, "scn-00000000000000f1")

    found = asg.applicable(db, "acme", "lea", "netplus", None, now)
    assert found is not None and found.attempts_used == 0  # the spawn gate's count
    assert [a["attempts_used"] for a in asg.my_assignments(db, "acme", "lea")] == [0]
    data = dashboard.cohort_labs(db, ANN, cid)
    row = dashboard.figures(data, {}, "acme", lambda _lab, c: c)["assignments"][0]["rows"][0]
    assert (row["status"], row["attempts_used"], row["labs"]) == (
        "started", 0, ["scn-00000000000000f1"])  # the failed lab is still shown

    # The learner starts again: that lab ran, then failed; it counts.
    assert attempts.take_attempt(db, aid, "lea", "req-scn-00000000000000f2", 1) == (2, True)
    _lab_that_went(db, "scn-00000000000000f2", "launching", "running", "failed")
    attempts.settle_attempt(db, aid, "lea", 2, "scn-00000000000000f2")
    assert attempts.take_attempt(db, aid, "lea", "req-3", 1) is None
    found = asg.applicable(db, "acme", "lea", "netplus", None, now)
    assert found is not None and found.attempts_used == 1
    data = dashboard.cohort_labs(db, ANN, cid)
    row = dashboard.figures(data, {}, "acme", lambda _lab, c: c)["assignments"][0]["rows"][0]
    assert row["attempts_used"] == 1


def _row(db: Database, assignment_id: str) -> asg.Assignment:
    with db.read() as sess:
        row = sess.get(asg.Assignment, assignment_id)
        assert row is not None
        sess.expunge(row)
        return row
