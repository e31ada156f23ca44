"""What an instructor may read, as SQL: the labs of the assignments of the cohorts they
manage (`cohorts.managed_ids`), each lab of a learner enrolled there (issue 18 item 3).

Every dashboard read puts these conditions in its own query (never a filter after
loading), so a row of another tenant or cohort is never read at all. Answers for anything
out of scope are 404, the same as for an id that does not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from forge.classroom.cohorts import Manager, managed_ids, need_staff_role
from forge.classroom.roster_csv import SUBJECT_RE
from forge.errors import ForgeError, invalid_field
from forge.store.models import (
    Assignment,
    AssignmentAttempt,
    Enrolment,
    Scenario,
)
from forge_verify.score import SCENARIO_ID_RE


def check_subject(subject: object) -> str:
    """A well-formed account id (422 naming the field otherwise)."""
    if not isinstance(subject, str) or SUBJECT_RE.fullmatch(subject) is None:
        raise invalid_field("subject", "expected an account id (letters, digits and . _ @ : -)")
    return subject


def check_scenario_id(scenario_id: object) -> str:
    """A well-formed lab id (422 naming the field otherwise)."""
    if not isinstance(scenario_id, str) or SCENARIO_ID_RE.fullmatch(scenario_id) is None:
        raise invalid_field("scenario_id", "expected scn-<16 hex digits>")
    return scenario_id


def _in_scope(query: Select[Any], who: Manager, cohort_id: str | None,
              subject: str | None) -> Select[Any]:
    query = (
        query.select_from(AssignmentAttempt)
        .join(Assignment, Assignment.assignment_id == AssignmentAttempt.assignment_id)
        .join(Enrolment, and_(Enrolment.cohort_id == Assignment.cohort_id,
                              Enrolment.subject == AssignmentAttempt.subject))
        .join(Scenario, Scenario.scenario_id == AssignmentAttempt.scenario_id)
        .where(Assignment.cohort_id.in_(managed_ids(who, cohort_id)),
               Assignment.tenant_id == who.tenant_id, Enrolment.tenant_id == who.tenant_id,
               Scenario.tenant_id == who.tenant_id,
               Scenario.subject == AssignmentAttempt.subject))
    return query if subject is None else query.where(AssignmentAttempt.subject == subject)


def scoped_labs(who: Manager, cohort_id: str | None = None, subject: str | None = None
                ) -> Select[Any]:
    """Labs started for assignments of cohorts `who` manages, by learners enrolled in that
    cohort, of that tenant: (assignment id, subject, attempt, Scenario)."""
    query: Select[Any] = select(AssignmentAttempt.assignment_id,  # type: ignore[assignment]
                                AssignmentAttempt.subject, AssignmentAttempt.attempt, Scenario)
    return _in_scope(query, who, cohort_id, subject)


def scoped_lab_ids(who: Manager, cohort_id: str | None = None, subject: str | None = None
                   ) -> Select[Any]:
    """The ids of the same labs, as a subquery for reads of their records."""
    query: Select[Any] = select(AssignmentAttempt.scenario_id)
    return _in_scope(query, who, cohort_id, subject)


def lab_in_scope(sess: Session, who: Manager, scenario_id: str) -> None:
    """Pass for a lab `who` may look at: one started for an assignment of a cohort they
    manage, by a learner enrolled there; 422 for a malformed id, 403 for a learner, 404
    `lab_not_found` otherwise."""
    check_scenario_id(scenario_id)
    need_staff_role(who)
    row = sess.execute(scoped_lab_ids(who).where(Scenario.scenario_id == scenario_id)
                       .limit(1)).first()
    if row is None:
        raise ForgeError("lab_not_found", 404, "scenario_id: no such lab in your cohorts",
                         [{"field": "scenario_id"}])
