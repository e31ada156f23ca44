"""Attacks on what an LTI 1.3 launch may make of a person or a course (issue 18 item 4,
security review of the merged tool).

The platforms are the local LTI platform emulator (tests/support/lti_platform.py: its own
RSA keys, signs launches, serves a roster; no LMS runs here); spawn_service is the real app
on uvicorn, sharing the world of tests/security/test_lti_launch.py. Before → after:

- a role that merely ends like a teaching role (`…/membership/Learner#Instructor`,
  `…/institution/person#Instructor`, `…/system/person#Administrator`, `…/membership#Mentor`)
  made the learner course staff and a tenant instructor → they land as a learner;
- any instructor could bind a guessable, not yet launched course id to their own cohort
  (capturing the real course's launches) → only an operator of the tenant may (403);
- a learner launch (or the roster) overwrote the tenant-wide role, demoting an operator
  or instructor to learner → LTI only ever raises a role, never lowers it;
- a course recorded for another tenant than the platform's current one was reused,
  enrolling the launched person into another tenant's cohort → refused, nothing recorded,
  and the roster of such a course is never read;
- a deep linking launch refused as too large for the browser still recorded the person's
  role, their seat and the course's cohort → refused before anything is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from forge.classroom import lti_links
from forge.classroom.cohorts import Manager, create_cohort
from forge.identity.lti import teaches_course
from forge.identity.roles import INSTRUCTOR, LEARNER, OPERATOR, record_role, role_of
from forge.store.models import CohortStaff, Enrolment, LtiContext

from ..support.lti_platform import INSTRUCTOR_ROLE, LEARNER_ROLE, landing_of, run_launch
from .test_lti_launch import World, _launch, _roles, refused
from .test_lti_launch import shared as shared  # its fixtures, one platform for this module
from .test_lti_launch import world as world

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
LOOKALIKES = (LIS + "membership/Learner#Instructor", LIS + "institution/person#Instructor",
              LIS + "system/person#Administrator", LIS + "membership#Mentor")
DL_CLAIM = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"


@pytest.fixture
def w(shared: World) -> Iterator[World]:
    """The shared platform; the emulator's roster is emptied after each test."""
    yield shared
    shared.acme.members = []


def _teacher(w: World, user: str) -> httpx.Client:
    """A browser of `user`, launched as an instructor of acme's course."""
    browser, answer = run_launch(w.forge.url, w.acme.login_url(
        w.forge.url, user, roles=(INSTRUCTOR_ROLE,)))
    assert answer.status_code == 200 and landing_of(answer) == "/teach", answer.text
    return browser


def _acme_cohort(w: World) -> str:
    course = lti_links.course_of(w.forge.db, "emulator", w.acme.course_id)
    assert course is not None
    return course.cohort_id


def test_roles_that_only_end_like_teaching_roles_land_as_a_learner(w: World) -> None:
    assert teaches_course([LIS + "membership#Instructor"])
    assert teaches_course([LIS + "membership/Instructor#TeachingAssistant"])
    cohort_id = _acme_cohort(w)
    for n, role in enumerate(LOOKALIKES):
        assert not teaches_course([role])  # the roster reads roles the same way
        user = f"look{n}"
        _, answer = run_launch(w.forge.url, w.acme.login_url(
            w.forge.url, user, roles=(role,), custom={"forge_assignment": w.assignment_id}))
        assert answer.status_code == 200, answer.text
        assert landing_of(answer) == f"/lti/assignment/{w.assignment_id}", role
        assert role_of(w.forge.db, "acme", f"lti.{user}") == LEARNER, role
        with w.forge.db.read() as sess:
            assert sess.get(CohortStaff, (cohort_id, f"lti.{user}")) is None, role
            assert sess.get(Enrolment, (cohort_id, f"lti.{user}")) is not None


def test_only_an_operator_links_a_course_to_a_cohort(w: World) -> None:
    db = w.forge.db
    teacher = _teacher(w, "tom")
    cohort_id = _acme_cohort(w)
    body = {"platform": "emulator", "context_id": "course-guessed"}
    answer = teacher.post(f"/v1/cohorts/{cohort_id}/lti-course", json=body,
                          headers={"origin": w.forge.url})
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "operator_required"
    assert lti_links.course_of(db, "emulator", "course-guessed") is None  # nothing bound
    # Nor does an instructor learn which LMSs are registered: the same 403 for a name
    # that is not one (probe AT: it was 404 `lti_platform_unknown`, checked first).
    unknown = teacher.post(f"/v1/cohorts/{cohort_id}/lti-course",
                           json={**body, "platform": "no-such-lms"},
                           headers={"origin": w.forge.url})
    assert (unknown.status_code, unknown.json()["error"]) == (403, "operator_required")
    record_role(db, "acme", "lti.tom", OPERATOR)  # the tenant made tom an operator
    for bad in ("course\x00x", "course\nx"):  # a NUL was a 500 on PostgreSQL: now a 422
        refused = teacher.post(f"/v1/cohorts/{cohort_id}/lti-course",
                               json={**body, "context_id": bad},
                               headers={"origin": w.forge.url})
        assert refused.status_code == 422 and "context_id" in refused.text, refused.text
    ok = teacher.post(f"/v1/cohorts/{cohort_id}/lti-course", json=body,
                      headers={"origin": w.forge.url})
    assert ok.status_code == 200, ok.text
    linked = lti_links.course_of(db, "emulator", "course-guessed")
    assert linked is not None and linked.cohort_id == cohort_id


def test_a_launch_or_roster_never_lowers_a_role(w: World) -> None:
    db = w.forge.db
    record_role(db, "acme", "lti.opal", OPERATOR)
    record_role(db, "acme", "lti.ines", INSTRUCTOR)
    for user in ("opal", "ines", "newt"):
        assert _launch(w, user).status_code == 200
    assert role_of(db, "acme", "lti.opal") == OPERATOR
    assert role_of(db, "acme", "lti.ines") == INSTRUCTOR
    assert role_of(db, "acme", "lti.newt") == LEARNER  # no role yet: a learner's is made
    _teacher(w, "opal")  # a teaching launch of an operator keeps them operator
    assert role_of(db, "acme", "lti.opal") == OPERATOR
    teacher = _teacher(w, "tess")  # a teaching launch raises a learner to instructor
    assert role_of(db, "acme", "lti.tess") == INSTRUCTOR
    w.acme.members = [{"user_id": u, "roles": [LEARNER_ROLE]} for u in ("opal", "ines")]
    synced = teacher.post(f"/v1/cohorts/{_acme_cohort(w)}/lti-roster",
                          headers={"origin": w.forge.url})
    assert synced.status_code == 200, synced.text
    assert role_of(db, "acme", "lti.opal") == OPERATOR
    assert role_of(db, "acme", "lti.ines") == INSTRUCTOR


def test_a_course_of_another_tenant_is_never_reused(w: World) -> None:
    db = w.forge.db
    # The course was first recorded when this platform belonged to globex.
    theirs = create_cohort(db, Manager("globex", "gail", INSTRUCTOR), "Globex course")
    lti_links.link_course(db, "emulator", "course-moved", "globex", theirs.cohort_id)
    _, answer = run_launch(w.forge.url, w.acme.login_url(
        w.forge.url, "mo", course_id="course-moved"))
    refused(answer, 409, "another organisation")
    assert _roles(w.forge, "lti.mo") == 0
    with db.read() as sess:
        assert sess.get(Enrolment, (theirs.cohort_id, "lti.mo")) is None
    # Nor is the roster of a course recorded for another tenant read into a cohort.
    teacher = _teacher(w, "tara")
    record_role(db, "acme", "lti.tara", OPERATOR)
    mine = create_cohort(db, Manager("acme", "lti.tara", OPERATOR), "Odd course")
    lti_links.link_course(db, "emulator", "course-odd", "globex", mine.cohort_id)
    with db.session() as sess:
        row = sess.get(LtiContext, ("emulator", "course-odd"))
        assert row is not None
        row.memberships_url = f"{w.acme.issuer}/memberships/course-odd"
    w.acme.members = [{"user_id": "mallory", "roles": [INSTRUCTOR_ROLE]}]
    synced = teacher.post(f"/v1/cohorts/{mine.cohort_id}/lti-roster",
                          headers={"origin": w.forge.url})
    assert synced.status_code == 409, synced.text
    assert _roles(w.forge, "lti.mallory") == 0


def test_a_refused_deep_link_records_nothing(w: World) -> None:
    w.acme.claims[DL_CLAIM] = {
        "deep_link_return_url": f"{w.acme.issuer}/deep-link-return",
        "accept_types": ["ltiResourceLink"],
        "accept_presentation_document_targets": ["window"], "data": "x" * 6000}
    _, answer = run_launch(w.forge.url, w.acme.login_url(
        w.forge.url, "dina", roles=(INSTRUCTOR_ROLE,), message="LtiDeepLinkingRequest",
        course_id="course-big"))
    refused(answer, 400, "more than Forge can keep")
    assert _roles(w.forge, "lti.dina") == 0
    assert lti_links.course_of(w.forge.db, "emulator", "course-big") is None
    with w.forge.db.read() as sess:
        assert sess.scalars(select(CohortStaff).where(
            CohortStaff.subject == "lti.dina")).first() is None
