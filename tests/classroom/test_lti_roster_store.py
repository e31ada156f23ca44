"""A course roster is stored in one transaction: every member's tenant role raised and
their seat in the cohort, or nothing at all.

Before, each member's role was raised in its own write transaction (up to 10,000 of them
for one sync), then the cohort seats in another: a failure on the way (here the cohort
deleted meanwhile, so its seats break the foreign key) left the members' roles raised,
instructors among them, with nobody seated. Real SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from forge.classroom.cohorts import Manager, create_cohort, enrolled_cohorts, members
from forge.errors import ForgeError
from forge.identity.roles import INSTRUCTOR, LEARNER, OPERATOR, raise_role, role_of
from forge.services.spawn.web.lti_deep_link import store_roster
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import TenantRole


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def _recorded(db: Database, subjects: list[str]) -> list[str]:
    with db.read() as sess:
        return list(sess.scalars(select(TenantRole.subject).where(
            TenantRole.tenant_id == "acme", TenantRole.subject.in_(subjects))))


def test_a_roster_is_stored_whole_and_never_lowers_a_role(db: Database) -> None:
    cohort = create_cohort(db, Manager("acme", "ann", "instructor"), "Course")
    raise_role(db, "acme", "lti.op", OPERATOR)
    people = [("lti.l1", False), ("lti.l2", False), ("lti.t1", True), ("lti.op", False)]
    assert store_roster(db, cohort.cohort_id, "acme", people) == 4
    assert [role_of(db, "acme", s) for s, _ in people] == [LEARNER, LEARNER, INSTRUCTOR,
                                                            OPERATOR]
    assert enrolled_cohorts(db, "acme", "lti.l1")
    assert store_roster(db, cohort.cohort_id, "acme", people) == 0  # again: nothing new


def test_a_roster_failing_midway_leaves_nothing(db: Database) -> None:
    cohort = create_cohort(db, Manager("acme", "ann", "instructor"), "Course")
    raise_role(db, "acme", "lti.known", LEARNER)
    people = [("lti.new1", False), ("lti.known", True), ("lti.new2", True)]
    gone = "coh-" + "0" * 16  # the cohort deleted while its roster was read
    with pytest.raises(ForgeError) as refused:
        store_roster(db, gone, "acme", people)
    assert (refused.value.code, refused.value.status) == ("lti_roster_not_stored", 409)
    assert _recorded(db, ["lti.new1", "lti.new2"]) == []  # no role raised for anyone
    assert role_of(db, "acme", "lti.known") == LEARNER  # not made an instructor
    assert store_roster(db, cohort.cohort_id, "acme", people) == 3


def test_a_large_roster_is_stored_whole_in_chunks(db: Database) -> None:
    """More people than one bulk statement takes (500): every one is seated and their role
    raised, a known learner made instructor, one listed both ways seated as an instructor
    alone, nobody lowered, and again nothing new."""
    cohort = create_cohort(db, Manager("acme", "ann", "instructor"), "Course")
    raise_role(db, "acme", "lti.b700", OPERATOR)
    raise_role(db, "acme", "lti.b3", LEARNER)
    people = [(f"lti.b{n}", n % 100 == 3) for n in range(1203)]
    people.append(("lti.b5", True))  # also teaches: an instructor only, no learner's seat
    assert store_roster(db, cohort.cohort_id, "acme", people) == 1203
    assert "lti.b5" not in [m.subject for m in members(db, Manager(
        "acme", "ann", "instructor"), cohort.cohort_id)]
    assert role_of(db, "acme", "lti.b3") == INSTRUCTOR
    assert role_of(db, "acme", "lti.b5") == INSTRUCTOR
    assert role_of(db, "acme", "lti.b700") == OPERATOR
    assert role_of(db, "acme", "lti.b1202") == LEARNER
    assert len(_recorded(db, [s for s, _ in people])) == 1203
    assert enrolled_cohorts(db, "acme", "lti.b1202")
    assert store_roster(db, cohort.cohort_id, "acme", people) == 0
