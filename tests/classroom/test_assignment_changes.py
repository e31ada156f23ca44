"""An instructor changes a class after it started: an assignment's window, attempts or
hints; one learner's own due time (an extension); a learner taken out of the cohort. Real
SQLite and PostgreSQL: who may do each, what is refused (naming the field, nothing
stored), and what the spawn gate's reading (`applicable`) and the learner's list see."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from forge.classroom import assignments as asg
from forge.classroom import attempt_grants, attempts, cohorts, dashboard, staff
from forge.classroom import class_changes as chg
from forge.classroom.cohorts import Manager
from forge.errors import ForgeError
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Assignment, AssignmentAttemptGrant, AssignmentExtension

ANN = Manager("acme", "ann", "instructor")
BOB = Manager("acme", "bob", "instructor")  # another class of the same tenant
LEA = Manager("acme", "lea", "learner")
OTHER = Manager("globex", "ann", "instructor")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def _class(db: Database) -> tuple[str, str]:
    """Ann's class with lea and leo (by CSV) and one assignment that closed an hour ago."""
    c = cohorts.create_cohort(db, ANN, "Net").cohort_id
    cohorts.enrol_subjects(db, ANN, c, ["lea", "leo"])
    a = asg.create_assignment(db, ANN, c, template_id="netplus",
                              opens_at=NOW - timedelta(hours=3),
                              closes_at=NOW - timedelta(hours=1), attempts_allowed=1,
                              hints_allowed=False, known_templates={"netplus"})
    return c, a.assignment_id


def _refused(call: object, status: int, code: str, field: str | None = None) -> None:
    with pytest.raises(ForgeError) as exc:
        call()  # type: ignore[operator]
    assert (exc.value.status, exc.value.code) == (status, code), exc.value.message
    if field is not None:
        assert exc.value.details[0]["field"] == field
        assert exc.value.message.startswith(f"{field}: ")


def _row(db: Database, assignment_id: str) -> Assignment:
    with db.read() as sess:
        row = sess.get(Assignment, assignment_id)
        assert row is not None
        sess.expunge(row)
        return row


def test_an_assignment_is_changed_only_by_its_class_and_only_validly(db: Database) -> None:
    c, a = _class(db)
    before = _row(db, a)
    for who, status, code in ((LEA, 403, "instructor_required"),
                              (BOB, 404, "cohort_not_found"), (OTHER, 404, "cohort_not_found")):
        _refused(lambda who=who: chg.update_assignment(db, who, c, a, {"attempts_allowed": 5}),
                 status, code)
    bob_class = cohorts.create_cohort(db, BOB, "Other").cohort_id
    staff.add_instructor(db, BOB, bob_class, "ann")  # ann manages it, but a is not its
    _refused(lambda: chg.update_assignment(db, ANN, bob_class, a, {"attempts_allowed": 5}),
             404, "assignment_not_found")
    for changes, field in (({}, "body"), ({"template_id": "x"}, "template_id"),
                           ({"closes_at": NOW - timedelta(hours=4)}, "closes_at"),
                           ({"opens_at": NOW}, "closes_at"),  # after the old closes_at
                           ({"closes_at": datetime(2030, 1, 1)}, "closes_at"),  # no zone
                           ({"attempts_allowed": 0}, "attempts_allowed")):
        _refused(lambda changes=changes: chg.update_assignment(db, ANN, c, a, changes),
                 422, "validation_error", field)
    after = _row(db, a)  # nothing of a refused change was stored
    assert (after.opens_at, after.closes_at, after.attempts_allowed) == (
        before.opens_at, before.closes_at, before.attempts_allowed)
    row = chg.update_assignment(db, ANN, c, a, {"closes_at": NOW + timedelta(days=1),
                                                "attempts_allowed": 3})
    assert asg.view(row)["closes_at"] == asg.iso(NOW + timedelta(days=1))
    assert (_row(db, a).attempts_allowed, _row(db, a).hints_allowed) == (3, False)
    found = asg.applicable(db, "acme", "lea", "netplus", None, NOW)
    assert found is not None and found.attempts_allowed == 3
    assert found.policy_input(NOW)["closes_at"] == asg.iso(NOW + timedelta(days=1))


def test_a_learners_extension_applies_to_them_alone(db: Database) -> None:
    c, a = _class(db)
    own = NOW + timedelta(hours=2)
    for who, status, code in ((LEA, 403, "instructor_required"),
                              (BOB, 404, "cohort_not_found"), (OTHER, 404, "cohort_not_found")):
        _refused(lambda who=who: chg.set_due(db, who, c, a, "lea", own), status, code)
    _refused(lambda: chg.set_due(db, ANN, c, a, "lou", own), 404, "learner_not_found",
             "subject")  # not of this class
    _refused(lambda: chg.set_due(db, ANN, c, a, "lea", NOW - timedelta(hours=2)), 422,
             "validation_error", "closes_at")  # before the class's due time: no extension
    with db.read() as sess:
        assert sess.scalar(select(func.count()).select_from(AssignmentExtension)) == 0
    ext = chg.set_due(db, ANN, c, a, "lea", own)
    assert (ext.closes_at.replace(tzinfo=UTC), ext.granted_by) == (own, "ann")
    chg.set_due(db, ANN, c, a, "lea", own + timedelta(hours=1))  # set again: replaced
    own += timedelta(hours=1)
    mine = asg.applicable(db, "acme", "lea", "netplus", None, NOW)
    theirs = asg.applicable(db, "acme", "leo", "netplus", None, NOW)
    assert mine is not None and theirs is not None
    assert mine.policy_input(NOW)["closes_at"] == asg.iso(own)  # the gate lets lea start
    assert theirs.policy_input(NOW)["closes_at"] == asg.iso(NOW - timedelta(hours=1))
    [lea_view] = asg.my_assignments(db, "acme", "lea")
    [leo_view] = asg.my_assignments(db, "acme", "leo")
    assert (lea_view["closes_at"], lea_view["due_extended"]) == (asg.iso(own), True)
    assert (leo_view["closes_at"], leo_view["due_extended"]) == (
        asg.iso(NOW - timedelta(hours=1)), False)
    # The class's due time moved later than lea's extension: she is never left with less
    # time than her class (the later of the two), and her list says she has no more.
    later = NOW + timedelta(days=3)
    chg.update_assignment(db, ANN, c, a, {"closes_at": later})
    mine = asg.applicable(db, "acme", "lea", "netplus", None, NOW)
    assert mine is not None and mine.policy_input(NOW)["closes_at"] == asg.iso(later)
    [lea_view] = asg.my_assignments(db, "acme", "lea")
    assert (lea_view["closes_at"], lea_view["due_extended"]) == (asg.iso(later), False)
    # Moved back earlier: her extension applies again.
    chg.update_assignment(db, ANN, c, a, {"closes_at": NOW + timedelta(minutes=30)})
    mine = asg.applicable(db, "acme", "lea", "netplus", None, NOW)
    assert mine is not None and mine.policy_input(NOW)["closes_at"] == asg.iso(own)
    # Taken back: the class's due time applies to lea again; a second clear is a 404.
    chg.clear_due(db, ANN, c, a, "lea")
    mine = asg.applicable(db, "acme", "lea", "netplus", None, NOW)
    assert mine is not None
    assert mine.policy_input(NOW)["closes_at"] == asg.iso(NOW + timedelta(minutes=30))
    _refused(lambda: chg.clear_due(db, ANN, c, a, "lea"), 404, "extension_not_found",
             "subject")


def test_extra_attempts_for_one_learner_let_them_alone_start_again(db: Database) -> None:
    """Lea used her only attempt: Ann gives her two more (with the reason), and the start
    check, her list and the dashboard use her own allowance; leo keeps the class's."""
    c, a = _class(db)
    chg.update_assignment(db, ANN, c, a, {"closes_at": NOW + timedelta(days=1)})
    assert attempts.take_attempt(db, a, "lea", "req-1", 1) == (1, True)
    used_up = asg.applicable(db, "acme", "lea", "netplus", None, NOW)
    assert used_up is not None and used_up.policy_input(NOW)["attempts"] == {
        "allowed": 1, "used": 1}
    for who, status, code in ((LEA, 403, "instructor_required"),
                              (BOB, 404, "cohort_not_found"), (OTHER, 404, "cohort_not_found")):
        _refused(lambda who=who: attempt_grants.grant_attempts(db, who, c, a, "lea", 2, "crash"),
                 status, code)
    _refused(lambda: attempt_grants.grant_attempts(db, ANN, c, a, "lou", 2, "crash"), 404,
             "learner_not_found", "subject")
    for extra, reason, field in ((0, "crash", "extra_attempts"), (21, "crash", "extra_attempts"),
                                 (True, "crash", "extra_attempts"), (2, " ", "reason"),
                                 (2, "x" * 201, "reason"), (2, "a\x00b", "reason")):
        _refused(lambda extra=extra, reason=reason: attempt_grants.grant_attempts(
            db, ANN, c, a, "lea", extra, reason), 422, "validation_error", field)
    with db.read() as sess:
        assert sess.scalar(select(func.count()).select_from(AssignmentAttemptGrant)) == 0
    row = attempt_grants.grant_attempts(db, ANN, c, a, "lea", 2, " her lab crashed ")
    assert (row.extra, row.reason, row.granted_by) == (2, "her lab crashed", "ann")
    mine = asg.applicable(db, "acme", "lea", "netplus", None, NOW)
    theirs = asg.applicable(db, "acme", "leo", "netplus", None, NOW)
    assert mine is not None and theirs is not None
    assert (mine.attempts_allowed, theirs.attempts_allowed) == (3, 1)
    assert attempts.take_attempt(db, a, "lea", "req-2", mine.attempts_allowed) == (2, True)
    [lea_view] = asg.my_assignments(db, "acme", "lea")
    [leo_view] = asg.my_assignments(db, "acme", "leo")
    assert (lea_view["attempts_allowed"], lea_view["attempts_used"]) == (3, 2)
    assert leo_view["attempts_allowed"] == 1
    labs = dashboard.cohort_labs(db, ANN, c)
    [row_a] = labs.assignments
    assert {s: dashboard.learner_cell(labs, {}, "acme", row_a, s, [])["attempts_allowed"]
            for s in labs.learners} == {"lea": 3, "leo": 1}
    # Set again it replaces the last; taken back, the class's applies; a second is a 404.
    attempt_grants.grant_attempts(db, ANN, c, a, "lea", 1, "one more is enough")
    mine = asg.applicable(db, "acme", "lea", "netplus", None, NOW)
    assert mine is not None and mine.attempts_allowed == 2
    attempt_grants.clear_grant(db, ANN, c, a, "lea")
    mine = asg.applicable(db, "acme", "lea", "netplus", None, NOW)
    assert mine is not None and mine.attempts_allowed == 1
    assert attempts.take_attempt(db, a, "lea", "req-3", mine.attempts_allowed) is None
    _refused(lambda: attempt_grants.clear_grant(db, ANN, c, a, "lea"), 404,
             "attempt_grant_not_found", "subject")


def test_a_learner_taken_out_of_a_class_loses_its_assignments(db: Database) -> None:
    c, a = _class(db)
    chg.set_due(db, ANN, c, a, "leo", NOW + timedelta(hours=2))
    attempt_grants.grant_attempts(db, ANN, c, a, "leo", 1, "crash")
    for who, status, code in ((LEA, 403, "instructor_required"),
                              (BOB, 404, "cohort_not_found"), (OTHER, 404, "cohort_not_found")):
        _refused(lambda who=who: chg.unenrol(db, who, c, "leo"), status, code)
    assert chg.unenrol(db, ANN, c, "leo") == "csv"
    assert [m.subject for m in cohorts.members(db, ANN, c)] == ["lea"]
    assert asg.my_assignments(db, "acme", "leo") == []
    # The lab is no longer assigned to leo: his plan alone decides a start of it.
    assert asg.applicable(db, "acme", "leo", "netplus", None, NOW) is None
    _refused(lambda: asg.applicable(db, "acme", "leo", "netplus", a, NOW), 404,
             "assignment_not_found")
    with db.read() as sess:  # his own due time and extra attempts went with him
        assert sess.scalar(select(func.count()).select_from(AssignmentExtension)) == 0
        assert sess.scalar(select(func.count()).select_from(AssignmentAttemptGrant)) == 0
    _refused(lambda: chg.unenrol(db, ANN, c, "leo"), 404, "learner_not_found", "subject")
    # Enrolled again, he starts afresh (the class's due time).
    cohorts.enrol_subjects(db, ANN, c, ["leo"])
    [view] = asg.my_assignments(db, "acme", "leo")
    assert view["due_extended"] is False


def test_a_member_of_the_identity_providers_group_comes_back_only_while_in_it(
        db: Database) -> None:
    """Taken out, a group member is enrolled again at a sign-in that still carries the
    group, and stays out after one that does not (they left it)."""
    c = cohorts.create_cohort(db, ANN, "Net", idp_group="net-101").cohort_id
    cohorts.enrol_by_groups(db, "acme", "gina", ["net-101"])
    assert chg.unenrol(db, ANN, c, "gina") == "group"
    assert cohorts.enrol_by_groups(db, "acme", "gina", ["other"]) == 0
    assert cohorts.members(db, ANN, c) == []
    assert cohorts.enrol_by_groups(db, "acme", "gina", ["net-101"]) == 1
    assert [m.subject for m in cohorts.members(db, ANN, c)] == ["gina"]


def _together(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls at once (each in its own thread, released together); each one's
    result or the exception it raised."""
    gate = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> object:
        gate.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_changes_at_the_same_moment_are_one_at_a_time(db: Database) -> None:
    """Each change reads and writes under the cohort's lock (PostgreSQL ran them
    interleaved: the same extension set twice at once was a 500 on its key, two valid
    window changes stored a window closing before it opened, and an extension given
    while the learner was taken out outlived their enrolment)."""
    c, a = _class(db)
    for _ in range(5):
        got = _together([lambda: chg.set_due(db, ANN, c, a, "lea", NOW + timedelta(hours=5))
                         for _ in range(4)])
        assert all(isinstance(g, AssignmentExtension) for g in got), got
        chg.update_assignment(db, ANN, c, a, {"opens_at": NOW - timedelta(hours=3),
                                              "closes_at": NOW + timedelta(hours=3)})
        got = _together([
            lambda: chg.update_assignment(db, ANN, c, a, {"opens_at": NOW + timedelta(hours=5)}),
            lambda: chg.update_assignment(db, ANN, c, a, {"closes_at": NOW + timedelta(hours=2)}),
        ])
        assert any(isinstance(g, Assignment) for g in got), got  # one of them applies
        row = _row(db, a)
        assert row.closes_at > row.opens_at  # never both
    for _ in range(5):
        cohorts.enrol_subjects(db, ANN, c, ["leo"])
        got = _together([lambda: chg.unenrol(db, ANN, c, "leo"),
                         lambda: chg.set_due(db, ANN, c, a, "leo", NOW + timedelta(days=2))])
        assert got[0] == "csv", got
        with db.read() as sess:  # taken out: no extension of theirs is left, whichever won
            assert sess.get(AssignmentExtension, (a, "leo")) is None


def test_every_change_of_a_running_class_leaves_a_line(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Who changed what, for an operator asked why a result stopped being late."""
    c, a = _class(db)
    with caplog.at_level(logging.INFO, logger="forge.classroom"):
        chg.update_assignment(db, ANN, c, a, {"attempts_allowed": 2})
        chg.set_due(db, ANN, c, a, "lea", NOW + timedelta(days=1))
        chg.clear_due(db, ANN, c, a, "lea")
        attempt_grants.grant_attempts(db, ANN, c, a, "lea", 2, "lab crashed")
        attempt_grants.clear_grant(db, ANN, c, a, "lea")
        chg.unenrol(db, ANN, c, "leo")
        with pytest.raises(ForgeError):
            chg.set_due(db, LEA, c, a, "lea", NOW + timedelta(days=9))  # refused: no line
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("forge.classroom")]
    assert lines == [
        f"assignment changed: tenant=acme cohort={c} assignment={a} by=ann attempts_allowed=2",
        f"extension given: tenant=acme cohort={c} assignment={a} subject=lea by=ann "
        f"closes_at={asg.iso(NOW + timedelta(days=1))}",
        f"extension taken back: tenant=acme cohort={c} assignment={a} subject=lea by=ann",
        f"attempts given: tenant=acme cohort={c} assignment={a} subject=lea by=ann extra=2 "
        "reason='lab crashed'",
        f"attempts taken back: tenant=acme cohort={c} assignment={a} subject=lea by=ann",
        f"learner taken out: tenant=acme cohort={c} subject=leo by=ann was_via=csv"]
