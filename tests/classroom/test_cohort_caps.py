"""A cohort holds at most `cohorts.MAX_MEMBERS` learners and `assignments.MAX_ASSIGNMENTS`
assignments, on every path that adds one: invite link, roster (CSV, JSON, /teach), IdP
group at sign-in, LMS launch and LMS roster sync. A request that would overflow is refused
whole (409, nothing of it stored); someone enrolled already is not a new member; a full
group cohort never breaks a sign-in. Real SQLite and PostgreSQL; the caps are set low.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from forge.classroom import assignments, cohort_invites, cohorts, lti_links
from forge.classroom.cohorts import Manager
from forge.classroom.lti_links import CourseSeat
from forge.errors import ForgeError
from forge.identity.roles import LEARNER, raise_role, role_of
from forge.services.spawn.web.lti_deep_link import store_roster
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Cohort, CohortStaff, TenantRole

ANN = Manager("acme", "ann", "instructor")
OPS = Manager("acme", "olga", "operator")  # manages every cohort of acme, LMS courses too
LAB = "lab-netplus"


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def _members(db: Database, cohort_id: str) -> list[str]:
    return [m.subject for m in cohorts.members(db, OPS, cohort_id)]


def _full(exc: pytest.ExceptionInfo[ForgeError], cap: int) -> None:
    """The refusal names the cap and the field."""
    assert (exc.value.status, exc.value.code) == (409, "cohort_full")
    assert f"at most {cap} learners" in exc.value.message
    assert exc.value.details[0]["field"] == "cohort_id"
    assert exc.value.details[0]["problem"] == f"at most {cap} learners"


def test_a_join_past_the_cap_is_refused_and_a_member_may_join_again(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", 2)
    c = cohorts.create_cohort(db, ANN, "Net").cohort_id
    _, token = cohort_invites.make_invite(db, ANN, c)
    for learner in ("lea", "leo"):
        cohort_invites.join_by_invite(db, "acme", learner, token)
    with pytest.raises(ForgeError) as full:
        cohort_invites.join_by_invite(db, "acme", "lia", token)
    _full(full, 2)
    assert cohort_invites.join_by_invite(db, "acme", "lea", token).cohort_id == c  # not a new member
    assert _members(db, c) == ["lea", "leo"]


def test_a_roster_past_the_cap_is_refused_whole(db: Database,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", 3)
    c = cohorts.create_cohort(db, ANN, "Net").cohort_id
    assert cohorts.enrol_subjects(db, ANN, c, ["lea", "leo"]).added == 2
    with pytest.raises(ForgeError) as full:  # leo again, lia and lou new: 4 > 3
        cohorts.enrol_subjects(db, ANN, c, ["leo", "lia", "lou"])
    _full(full, 3)
    assert "has 2, and this would add 2" in full.value.message
    assert _members(db, c) == ["lea", "leo"]  # nobody of it, not even the first that fit
    # The members already in count once: this list fills the cohort exactly.
    assert cohorts.enrol_subjects(db, ANN, c, ["lea", "leo", "lia", "lia"]).added == 1
    assert cohorts.enrol_subjects(db, ANN, c, ["lia", "lea"]).added == 0  # full, nobody new: fine
    with pytest.raises(ForgeError) as one_more:
        cohorts.enrol_subjects(db, ANN, c, ["lou"])
    _full(one_more, 3)
    assert _members(db, c) == ["lea", "leo", "lia"]


def test_a_full_group_cohort_is_skipped_at_sign_in(db: Database, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", 1)
    full = cohorts.create_cohort(db, ANN, "Full", idp_group="net-a").cohort_id
    room = cohorts.create_cohort(db, ANN, "Room", idp_group="net-b").cohort_id
    cohorts.enrol_subjects(db, ANN, full, ["zed"])
    with caplog.at_level(logging.WARNING, logger="forge.classroom.cohorts"):
        assert cohorts.enrol_by_groups(db, "acme", "lea.secret", ["net-a", "net-b"]) == 1
    assert cohorts.enrolled_cohorts(db, "acme", "lea.secret") == [room]
    assert _members(db, full) == ["zed"]
    (line,) = [r.getMessage() for r in caplog.records if "group enrolment" in r.getMessage()]
    assert full in line and "full" in line and "lea.secret" not in line
    # zed, already in, signs in again: nothing refused, nothing logged.
    caplog.clear()
    assert cohorts.enrol_by_groups(db, "acme", "zed", ["net-a"]) == 0
    assert not caplog.records


def test_an_lms_launch_into_a_full_course_is_refused_for_a_new_learner_only(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", 1)

    def seat(subject: str, teaches: bool = False) -> str:
        return lti_links.course_cohort(db, CourseSeat("moodle", "acme", "course-1", "Net",
                                                      subject, teaches)).cohort_id

    c = seat("lti.lea")
    with pytest.raises(ForgeError) as full:
        seat("lti.leo")
    _full(full, 1)
    assert seat("lti.lea") == c  # her next launch: already in
    assert seat("lti.tom", teaches=True) == c  # a teacher takes no learner's seat
    with db.read() as sess:
        assert sess.get(CohortStaff, (c, "lti.tom")) is not None
    assert _members(db, c) == ["lti.lea"]


def test_an_lms_roster_past_the_cap_is_refused_whole(db: Database,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", 3)
    c = cohorts.create_cohort(db, ANN, "Course").cohort_id
    first = [("lti.l1", False), ("lti.l2", False)] + [(f"lti.t{n}", True) for n in range(5)]
    assert store_roster(db, c, "acme", first) == 7  # teachers are not counted
    raise_role(db, "acme", "lti.l3", LEARNER)
    grown = [*first, ("lti.l3", False), ("lti.l4", False), ("lti.t9", True)]
    with pytest.raises(ForgeError) as full:
        store_roster(db, c, "acme", grown)
    _full(full, 3)
    assert _members(db, c) == ["lti.l1", "lti.l2"]
    with db.read() as sess:  # no role raised, no teacher added
        assert sess.get(TenantRole, ("acme", "lti.t9")) is None
        assert sess.get(CohortStaff, (c, "lti.t9")) is None
    assert role_of(db, "acme", "lti.l3") == LEARNER
    assert store_roster(db, c, "acme", [*first, ("lti.l3", False)]) == 1  # exactly full
    assert _members(db, c) == ["lti.l1", "lti.l2", "lti.l3"]


def _assign(db: Database, cohort_id: str) -> str:
    now = datetime.now(UTC)
    return assignments.create_assignment(
        db, ANN, cohort_id, template_id=LAB, opens_at=now, closes_at=now + timedelta(hours=1),
        attempts_allowed=1, hints_allowed=True, known_templates={LAB}).assignment_id


def test_assignments_past_the_cap_are_refused(db: Database,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assignments, "MAX_ASSIGNMENTS", 2)
    c = cohorts.create_cohort(db, ANN, "Net").cohort_id
    other = cohorts.create_cohort(db, ANN, "Other").cohort_id
    _assign(db, c)
    _assign(db, c)
    with pytest.raises(ForgeError) as full:
        _assign(db, c)
    assert (full.value.status, full.value.code) == (409, "cohort_assignments_full")
    assert "at most 2 assignments" in full.value.message
    assert full.value.details == [{"field": "cohort_id", "problem": "at most 2 assignments"}]
    assert len(assignments.cohort_assignments(db, ANN, c)) == 2
    _assign(db, other)  # the cap is per cohort


def _waiting_on_locks(db: Database) -> int:
    """Sessions of this database waiting for a lock now (PostgreSQL)."""
    with db.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one())


def _race(db: Database, cohort_id: str, adds: list[Callable[[], object]]) -> list[object]:
    """Run `adds` at once while this test holds the cohort's row, release it once every
    one of them waits for it, and return what each gave (its result or its error)."""
    results: list[object] = [None] * len(adds)

    def run(i: int) -> None:
        try:
            results[i] = adds[i]()
        except ForgeError as exc:
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(adds))]
    with db.session() as holder:
        holder.execute(select(Cohort.cohort_id).where(Cohort.cohort_id == cohort_id)
                       .with_for_update(key_share=True))
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60  # a bound on the wait, not a timing assertion
        while _waiting_on_locks(db) < len(adds):
            assert time.monotonic() < deadline, "the adds never waited for the cohort row"
            time.sleep(0.02)
    for t in threads:
        t.join(60)
    return results


def test_two_joins_at_one_seat_left_admit_exactly_one_on_postgres(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both joins count the learners while the other has not committed: without a lock
    held from the count to the insert, both saw one seat left and both got in."""
    upgrade(postgres_url)
    db = Database(postgres_url)
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", 3)
    c = cohorts.create_cohort(db, ANN, "Net").cohort_id
    _, token = cohort_invites.make_invite(db, ANN, c)
    cohorts.enrol_subjects(db, ANN, c, ["lea", "leo"])
    got = _race(db, c, [lambda: cohort_invites.join_by_invite(db, "acme", "lia", token),
                        lambda: cohort_invites.join_by_invite(db, "acme", "lou", token)])
    refused = [r for r in got if isinstance(r, ForgeError)]
    assert len(refused) == 1 and refused[0].code == "cohort_full", got
    assert len(_members(db, c)) == 3
    db.dispose()


def test_two_assignments_at_one_place_left_admit_exactly_one_on_postgres(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    upgrade(postgres_url)
    db = Database(postgres_url)
    monkeypatch.setattr(assignments, "MAX_ASSIGNMENTS", 2)
    c = cohorts.create_cohort(db, ANN, "Net").cohort_id
    _assign(db, c)
    got = _race(db, c, [lambda: _assign(db, c), lambda: _assign(db, c)])
    refused = [r for r in got if isinstance(r, ForgeError)]
    assert len(refused) == 1 and refused[0].code == "cohort_assignments_full", got
    assert len(assignments.cohort_assignments(db, ANN, c)) == 2
    db.dispose()
