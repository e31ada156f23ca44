"""Nobody is both an instructor and a learner of one class, by any path (red team AQ).

A learner of their own class is counted on its dashboard and takes its assignments. The
invite link, the IdP group and a roster already left instructors out; these are the
paths that did not: making an enrolled learner an instructor (API), an LMS roster that
lists the teacher as a learner or one person both ways, and an LMS launch as a learner
by an instructor (their student view) or as a teacher by a learner (a TA). Real SQLite
and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import select

from forge.classroom import assignments, class_changes, cohort_invites, cohorts, lti_links, staff
from forge.classroom.cohorts import Manager
from forge.classroom.lti_links import CourseSeat
from forge.errors import ForgeError
from forge.services.spawn.web.lti_deep_link import store_roster
from forge.store.db import Database
from forge.store.migrate import alembic_config, upgrade
from forge.store.models import AssignmentExtension, CohortStaff, Enrolment

ANN = Manager("acme", "ann", "instructor")
LAB = "lab-netplus"


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def _both(db: Database, cohort_id: str) -> tuple[list[str], list[str]]:
    """(instructors, learners) of the cohort, each sorted."""
    with db.read() as sess:
        staff = sorted(sess.scalars(select(CohortStaff.subject).where(
            CohortStaff.cohort_id == cohort_id)))
        learners = sorted(sess.scalars(select(Enrolment.subject).where(
            Enrolment.cohort_id == cohort_id)))
    return staff, learners


def test_a_learner_made_instructor_stops_being_a_learner(db: Database) -> None:
    c = cohorts.create_cohort(db, ANN, "Net A").cohort_id
    cohorts.enrol_subjects(db, ANN, c, ["lea", "leo"])
    now = datetime.now(UTC)
    asg = assignments.create_assignment(
        db, ANN, c, template_id=LAB, opens_at=now, closes_at=now + timedelta(days=1),
        attempts_allowed=1, hints_allowed=True, known_templates={LAB}).assignment_id
    class_changes.set_due(db, ANN, c, asg, "lea", now + timedelta(days=3))
    # Review CD: she would leave the class's dashboard and grade export, so only when the
    # caller says so; refused, nothing changes.
    with pytest.raises(ForgeError) as refused:
        staff.add_instructor(db, ANN, c, "lea")
    assert (refused.value.code, refused.value.status) == ("enrolled_learner", 409)
    assert _both(db, c) == (["ann"], ["lea", "leo"])
    staff.add_instructor(db, ANN, c, "lea", confirm=True)  # the TA of the class
    assert _both(db, c) == (["ann", "lea"], ["leo"])
    with db.read() as sess:
        assert sess.get(AssignmentExtension, (asg, "lea")) is None
    # A roster naming her afterwards says why she is not enrolled, and is right.
    assert cohorts.enrol_subjects(db, ANN, c, ["lea"]) == cohorts.Enrolled(0, ("lea",))
    staff.add_instructor(db, ANN, c, "lea")  # again: nothing changes
    assert _both(db, c) == (["ann", "lea"], ["leo"])


def test_an_lms_roster_never_seats_an_instructor_as_a_learner(db: Database) -> None:
    c = cohorts.create_cohort(db, ANN, "Course").cohort_id
    cohorts.enrol_subjects(db, ANN, c, ["lti.ta"])
    added = store_roster(db, c, "acme", [
        ("ann", False),  # the class's creator, listed as a learner by the LMS
        ("lti.neo", True), ("lti.neo", False),  # one person both ways: teaching wins
        ("lti.lea", False),
        ("lti.ta", True),  # enrolled before, teaching now
    ])
    assert added == 3  # neo and ta as instructors, lea as a learner
    assert _both(db, c) == (["ann", "lti.neo", "lti.ta"], ["lti.lea"])


def test_an_lms_launch_keeps_teachers_and_learners_apart(db: Database) -> None:
    def seat(subject: str, teaches: bool) -> lti_links.Seated:
        return lti_links.course_cohort(db, CourseSeat("moodle", "acme", "course-1", "Net",
                                                      subject, teaches))

    c = seat("lti.tom", True).cohort_id
    # the teacher's student view: told they teach it (the launch lands on /teach)
    assert seat("lti.tom", False) == lti_links.Seated(c, True)
    assert seat("lti.leo", False) == lti_links.Seated(c, False)
    seat("lti.leo", True)  # then teaching the course (a TA)
    assert _both(db, c) == (["lti.leo", "lti.tom"], [])


def test_people_left_both_before_the_rule_are_instructors_only_after_the_upgrade(
    db_url: str,
) -> None:
    """Migration 0012 ends the enrolments (and their own due times) of people who are
    instructors of the same cohort, as an earlier release could leave them; everyone
    else's stay."""
    upgrade(db_url)  # a fresh or migrated store, then back to the revision before
    command.downgrade(alembic_config(db_url), "0011")
    db = Database(db_url)
    c = cohorts.create_cohort(db, ANN, "Net A").cohort_id
    now = datetime.now(UTC)
    asg = assignments.create_assignment(
        db, ANN, c, template_id=LAB, opens_at=now, closes_at=now + timedelta(days=1),
        attempts_allowed=1, hints_allowed=True, known_templates={LAB}).assignment_id
    with db.session() as sess:  # as the old code left them: Tom both, Lea a learner
        sess.add(CohortStaff(cohort_id=c, subject="tom"))
        for who in ("tom", "lea"):
            sess.add(Enrolment(cohort_id=c, subject=who, tenant_id="acme", via="csv",
                               enrolled_at=now))
            sess.flush()
            sess.add(AssignmentExtension(assignment_id=asg, subject=who,
                                         closes_at=now + timedelta(days=2),
                                         granted_by="ann", granted_at=now))
    upgrade(db_url)
    assert _both(db, c) == (["ann", "tom"], ["lea"])
    with db.read() as sess:
        assert sess.get(AssignmentExtension, (asg, "tom")) is None
        assert sess.get(AssignmentExtension, (asg, "lea")) is not None


def test_one_already_both_is_mended_by_the_next_change(db: Database) -> None:
    """Made instructor again (API or an LMS roster), one already both stops being a
    learner; a full class then has room for the roster's newcomer."""
    c = cohorts.create_cohort(db, ANN, "Net A").cohort_id
    cohorts.enrol_subjects(db, ANN, c, ["tom", "lea"])
    with db.session() as sess:  # as the old code left him
        sess.add(CohortStaff(cohort_id=c, subject="tom"))
    staff.add_instructor(db, ANN, c, "tom")
    assert _both(db, c) == (["ann", "tom"], ["lea"])


def test_a_full_class_takes_a_roster_whose_teacher_was_its_learner(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", 2)
    c = cohorts.create_cohort(db, ANN, "Course").cohort_id
    cohorts.enrol_subjects(db, ANN, c, ["lti.a", "lti.x"])
    assert store_roster(db, c, "acme", [("lti.x", True), ("lti.new", False)]) == 2
    assert _both(db, c) == (["ann", "lti.x"], ["lti.a", "lti.new"])


def test_an_invite_or_group_never_seats_an_instructor(db: Database) -> None:
    """Checked under the cohort's lock (a sign-in or join that read "not an instructor"
    before a concurrent add committed would have seated them)."""
    c = cohorts.create_cohort(db, Manager("acme", "ann", "instructor"), "Net A",
                              "net-a").cohort_id
    _, token = cohort_invites.make_invite(db, ANN, c)
    staff.add_instructor(db, ANN, c, "bob")
    assert cohorts.enrol_by_groups(db, "acme", "bob", ["net-a"]) == 0
    with pytest.raises(ForgeError) as exc:
        cohort_invites.join_by_invite(db, "acme", "bob", token)
    assert exc.value.code == "cohort_staff"
    assert _both(db, c) == (["ann", "bob"], [])


def test_an_instructor_added_by_mistake_can_be_removed_but_not_the_last(db: Database) -> None:
    """Review CD: a co-instructor could not be removed (a past teaching assistant kept the
    class for ever). Removing one leaves the others; the last one stays (409); someone not
    an instructor is 404; a learner made instructor is not enrolled again."""
    c = cohorts.create_cohort(db, ANN, "Net A").cohort_id
    cohorts.enrol_subjects(db, ANN, c, ["lea"])
    staff.add_instructor(db, ANN, c, "bob")
    staff.add_instructor(db, ANN, c, "lea", confirm=True)
    staff.remove_instructor(db, ANN, c, "lea")
    assert _both(db, c) == (["ann", "bob"], [])
    with pytest.raises(ForgeError) as missing:
        staff.remove_instructor(db, ANN, c, "lea")
    assert (missing.value.code, missing.value.status) == ("not_found", 404)
    staff.remove_instructor(db, ANN, c, "ann")  # ann takes herself off; bob stays
    with pytest.raises(ForgeError) as last:
        staff.remove_instructor(db, Manager("acme", "bob", "instructor"), c, "bob")
    assert (last.value.code, last.value.status) == ("last_instructor", 409)
    assert _both(db, c) == (["bob"], [])
