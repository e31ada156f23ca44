"""Labs assigned to a cohort: window, attempts allowed and hints; what a learner sees of them.

What the spawn gate needs is gathered here (`applicable`) and judged by the policy
(`spawn.rego`, `assignment_reasons`); `attempts.take_attempt` then takes the attempt in
one store transaction, so two concurrent spawns never share or exceed one attempt.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, case, func, or_, select

from forge.classroom import attempts
from forge.classroom.cohorts import (
    ASSIGNMENT_ID_RE,
    Manager,
    lock_cohort,
    managed_cohort,
    managed_ids,
    new_id,
)
from forge.errors import ForgeError, invalid_field
from forge.store.db import Database
from forge.store.models import (
    Assignment,
    AssignmentAttempt,
    AssignmentAttemptGrant,
    AssignmentExtension,
    Cohort,
    Enrolment,
)
from forge.store.prepared import Prepared
from forge.store.timestamps import aware as _aware

MAX_ATTEMPTS = 100
# Assignments one cohort may hold: the dashboard reads them all, with every learner's labs.
MAX_ASSIGNMENTS = 200


def iso(ts: datetime) -> str:
    """A UTC timestamp as people and the policy read it, e.g. 2026-12-01T09:00:00Z."""
    return _aware(ts).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_text(value: object) -> str | None:
    """A stored ISO time (text, any offset or precision) as `iso` writes times; None when
    it is not one."""
    try:
        return iso(datetime.fromisoformat(str(value)))
    except ValueError:
        return None



EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def unknown_template(known_templates: Collection[str]) -> ForgeError:
    """The 422 of a `template_id` that names no lab: it lists the labs (also in
    `details[0].allowed`), since GET /v1/tracks refuses an instructor whose tenant has no
    plan, and the instructor needs the names either way."""
    labs = sorted(known_templates)
    return ForgeError("validation_error", 422,
                      f"template_id: not a lab of this platform; its labs: {', '.join(labs)}",
                      [{"field": "template_id", "problem": "not a lab of this platform",
                        "allowed": labs}])


def check_time(field: str, at: datetime) -> None:
    """422 naming `field` unless `at` has a time zone and lies in 2000-2099 (UTC): the
    spawn policy counts seconds from 1970, and a year 1 or 9999 time has no UTC form."""
    if at.tzinfo is None:
        raise invalid_field(field, "times need a time zone, e.g. 2026-12-01T09:00:00Z")
    try:
        ok = EARLIEST <= at.astimezone(UTC) < LATEST
    except OverflowError:
        ok = False
    if not ok:
        raise invalid_field(field, "a time from 2000 to 2099 (UTC)")


def check_terms(opens_at: datetime, closes_at: datetime, attempts_allowed: int) -> None:
    """422 naming the field unless the window's times are valid (`check_time`), it closes
    after it opens, and the attempts are 1-MAX_ATTEMPTS: an assignment's terms, made or
    changed."""
    for field, at in (("opens_at", opens_at), ("closes_at", closes_at)):
        check_time(field, at)
    # In whole seconds, as the spawn policy reads the window (`Applicable.policy_input`)
    # and every page shows it: a window inside one second (09:00:00.2-09:00:00.8) was
    # taken, shown as opening and closing at 09:00:00Z, and no start ever fell inside it.
    if closes_at <= opens_at:
        raise invalid_field("closes_at", "must be after opens_at")
    if int(closes_at.timestamp()) <= int(opens_at.timestamp()):
        raise invalid_field("closes_at", "must be at least a second after opens_at: the "
                                         "window counts whole seconds")
    if not 1 <= attempts_allowed <= MAX_ATTEMPTS:
        raise invalid_field("attempts_allowed", f"1-{MAX_ATTEMPTS}")


def create_assignment(db: Database, who: Manager, cohort_id: str, *, template_id: str,
                      opens_at: datetime, closes_at: datetime, attempts_allowed: int,
                      hints_allowed: bool, known_templates: Collection[str]) -> Assignment:
    """Assign a lab to a cohort `who` manages, open from `opens_at` until `closes_at`.
    Scope first (404 for a cohort not theirs), then the fields, then room: 409
    `cohort_assignments_full` when the cohort holds MAX_ASSIGNMENTS already."""
    with db.session() as sess:
        managed_cohort(sess, who, cohort_id)
        if template_id not in known_templates:
            raise unknown_template(known_templates)
        check_terms(opens_at, closes_at, attempts_allowed)
        lock_cohort(sess, cohort_id)  # the count and the insert: one step
        held = int(sess.scalar(select(func.count()).select_from(Assignment).where(
            Assignment.cohort_id == cohort_id)) or 0)
        if held >= MAX_ASSIGNMENTS:
            raise ForgeError(
                "cohort_assignments_full", 409,
                f"cohort_id: a cohort holds at most {MAX_ASSIGNMENTS} assignments and this "
                f"one has {held}: nothing was assigned",
                [{"field": "cohort_id", "problem": f"at most {MAX_ASSIGNMENTS} assignments"}])
        # Stored in UTC: SQLite keeps no zone, and a time read back without one is UTC.
        row = Assignment(assignment_id=new_id("asg"), cohort_id=cohort_id,
                         tenant_id=who.tenant_id, template_id=template_id,
                         opens_at=opens_at.astimezone(UTC), closes_at=closes_at.astimezone(UTC),
                         attempts_allowed=attempts_allowed, hints_allowed=hints_allowed,
                         created_by=who.subject, created_at=datetime.now(UTC))
        sess.add(row)
    return row


def due_for(own: datetime | None, closes_at: datetime) -> tuple[datetime, bool]:
    """A learner's due time for an assignment closing at `closes_at`, given their own
    (None: none), and whether it is later than the class's (extended)."""
    if own is not None and _aware(own) > _aware(closes_at):
        return own, True
    return closes_at, False


def view(row: Assignment, used: int | None = None) -> dict[str, Any]:
    """An assignment as the API shows it (attempts used only for a learner's own view)."""
    out: dict[str, Any] = {
        "assignment_id": row.assignment_id, "cohort_id": row.cohort_id,
        "template_id": row.template_id, "opens_at": iso(row.opens_at),
        "closes_at": iso(row.closes_at), "attempts_allowed": row.attempts_allowed,
        "hints_allowed": row.hints_allowed,
    }
    if used is not None:
        out["attempts_used"] = used
    return out


def cohort_assignments(db: Database, who: Manager, cohort_id: str) -> list[Assignment]:
    """The assignments of a cohort `who` manages, by opening time."""
    with db.read() as sess:
        managed_cohort(sess, who, cohort_id)
        rows = list(sess.scalars(select(Assignment).where(Assignment.cohort_id == cohort_id)
                                 .order_by(Assignment.opens_at)))
        sess.expunge_all()
        return rows


def assignments_of_cohorts(db: Database, who: Manager, cohort_ids: Collection[str]
                           ) -> dict[str, list[Assignment]]:
    """The assignments of each of `cohort_ids` that `who` manages (others are left out), by
    opening time, in one query: /teach shows a page of classes with theirs."""
    if not cohort_ids:
        return {}
    found: dict[str, list[Assignment]] = {}
    with db.read() as sess:
        for row in sess.scalars(select(Assignment).where(
                Assignment.cohort_id.in_(list(cohort_ids)),
                Assignment.cohort_id.in_(managed_ids(who)))
                .order_by(Assignment.opens_at, Assignment.assignment_id)):
            found.setdefault(row.cohort_id, []).append(row)
        sess.expunge_all()
    return found


# A learner's list: open and upcoming assignments and those closed in the last 30 days,
# at most MAX_MINE of them (cohorts and their assignments only grow, term after term).
MINE_CLOSED_WITHIN = timedelta(days=30)
MAX_MINE = 200


# A learner's due time: the later of their own (an extension) and the assignment's.
_DUE = case((AssignmentExtension.closes_at > Assignment.closes_at,
             AssignmentExtension.closes_at), else_=Assignment.closes_at)


def _mine(tenant_id: str, subject: str) -> Select[Assignment, str, datetime, int]:
    """The assignments of every cohort (tenant, subject) is in, with the cohort's name, the
    learner's own due time (None: the assignment's) and extra attempts given them."""
    return (select(Assignment, Cohort.name, AssignmentExtension.closes_at,
                   func.coalesce(AssignmentAttemptGrant.extra, 0))
            .join(Cohort, Cohort.cohort_id == Assignment.cohort_id)
            .join(Enrolment, Enrolment.cohort_id == Assignment.cohort_id)
            .outerjoin(AssignmentExtension, and_(
                AssignmentExtension.assignment_id == Assignment.assignment_id,
                AssignmentExtension.subject == subject))
            .outerjoin(AssignmentAttemptGrant, and_(
                AssignmentAttemptGrant.assignment_id == Assignment.assignment_id,
                AssignmentAttemptGrant.subject == subject))
            .where(Enrolment.tenant_id == tenant_id, Enrolment.subject == subject,
                   Assignment.tenant_id == tenant_id))


def _views(sess: Any, subject: str, rows: list[Any]) -> list[dict[str, Any]]:
    used = attempts.used_of(sess, subject, [r[0].assignment_id for r in rows])
    out = []
    for a, name, own, extra in rows:  # their allowance: the class's and extra given them
        due, extended = due_for(own, a.closes_at)
        out.append({**view(a, used.get(a.assignment_id, 0)), "cohort": name,
                    "closes_at": iso(due), "due_extended": extended,
                    "attempts_allowed": a.attempts_allowed + int(extra)})
    return out


def my_assignments(db: Database, tenant_id: str, subject: str,
                   now: datetime | None = None, limit: int = MAX_MINE,
                   after: str | None = None) -> list[dict[str, Any]]:
    """A learner's assignments in every cohort they are in, with due times and attempts:
    open, upcoming and closed in the last MINE_CLOSED_WITHIN, by due time (then id), at
    most `limit` (in a fixed number of queries); `after`: those that come after that
    assignment of theirs (422 naming `after` when it is not one)."""
    since = (now or datetime.now(UTC)) - MINE_CLOSED_WITHIN
    with db.read() as sess:
        due = _DUE
        query = _mine(tenant_id, subject).where(since <= due)
        if after is not None:
            anchor = sess.execute(_mine(tenant_id, subject).with_only_columns(due).where(
                Assignment.assignment_id == after)).first() \
                if ASSIGNMENT_ID_RE.fullmatch(after) else None
            if anchor is None:
                raise invalid_field("after", "the `next` of the previous page: one of your "
                                             "assignments")
            query = query.where(or_(due > anchor[0], and_(
                due == anchor[0], Assignment.assignment_id > after)))
        rows = sess.execute(query.order_by(due, Assignment.assignment_id)
                            .limit(limit)).all()
        return _views(sess, subject, list(rows))


def my_assignments_capped(db: Database, tenant_id: str, subject: str,
                          after: str | None = None) -> tuple[list[dict[str, Any]], bool]:
    """`my_assignments` (at most MAX_MINE, after `after`) and whether the learner has more
    than those: a list cut at the cap must say so, and lead to the rest."""
    rows = my_assignments(db, tenant_id, subject, limit=MAX_MINE + 1, after=after)
    return rows[:MAX_MINE], len(rows) > MAX_MINE


def my_assignment(db: Database, tenant_id: str, subject: str,
                  assignment_id: str) -> dict[str, Any] | None:
    """One of the learner's assignments (closed long ago too), or None when it is not one
    of a cohort they are in."""
    with db.read() as sess:
        rows = sess.execute(_mine(tenant_id, subject)
                            .where(Assignment.assignment_id == assignment_id)).all()
        views = _views(sess, subject, list(rows))
    return views[0] if views else None


@dataclass(frozen=True)
class Applicable:
    """The assignment that governs a learner's spawn of a lab, as the policy reads it."""

    assignment_id: str
    opens_at: datetime
    closes_at: datetime
    attempts_allowed: int
    attempts_used: int
    hints_allowed: bool
    # Of `attempts_used`, those a start took in the last `attempts.IN_FLIGHT` and has not
    # bound to a lab yet: it may still fail and give its attempt back (never part of the
    # policy input).
    attempts_in_flight: int = 0

    def policy_input(self, now: datetime) -> dict[str, Any]:
        """The `assignment` part of the spawn gate's input (see spawn.rego)."""
        return {
            "id": self.assignment_id, "now_s": int(now.timestamp()),
            "opens_at": iso(self.opens_at), "opens_at_s": int(_aware(self.opens_at).timestamp()),
            "closes_at": iso(self.closes_at),
            "closes_at_s": int(_aware(self.closes_at).timestamp()),
            "attempts": {"allowed": self.attempts_allowed, "used": self.attempts_used},
            "hints_allowed": self.hints_allowed,
        }


def _rank(a: Applicable, now: datetime) -> tuple[int, float]:
    # Open with attempts left, then open, then the next to open, then the last closed.
    opens, closes = _aware(a.opens_at), _aware(a.closes_at)
    if opens <= now < closes:
        return (0 if a.attempts_used < a.attempts_allowed else 1, closes.timestamp())
    if now < opens:
        return (2, opens.timestamp())
    return (3, -closes.timestamp())


def _ambiguous(classes: list[str]) -> ForgeError:
    """More than one class has this lab open for the learner: which one counts is theirs to
    say, never ours to guess (a guess would show one class's lab to the other's teacher)."""
    named = ", ".join(f'"{c}"' for c in classes)
    return ForgeError(
        "assignment_ambiguous", 409,
        f"lab: this lab is assigned to you by more than one class ({named}); start it from "
        '"Your assignments", next to the class it is for',
        [{"field": "assignment_id", "classes": classes}])


_ASSIGNMENTS: Table = Assignment.__table__  # type: ignore[assignment]
_COHORTS: Table = Cohort.__table__  # type: ignore[assignment]
_ENROLMENTS: Table = Enrolment.__table__  # type: ignore[assignment]
_EXTENSIONS: Table = AssignmentExtension.__table__  # type: ignore[assignment]
_GRANTS: Table = AssignmentAttemptGrant.__table__  # type: ignore[assignment]
# Every spawn asks this (most learners have no assignment of the lab): a Core statement
# built once, rows rather than ORM objects (the ORM load was ~11% of a spawn's CPU), run
# through the driver (forge.store.prepared).
_APPLICABLE = (
    select(_ASSIGNMENTS.c.assignment_id, _ASSIGNMENTS.c.cohort_id, _ASSIGNMENTS.c.opens_at,
           _ASSIGNMENTS.c.closes_at, _ASSIGNMENTS.c.attempts_allowed,
           _ASSIGNMENTS.c.hints_allowed, _COHORTS.c.name,
           _EXTENSIONS.c.closes_at.label("own_closes_at"), _GRANTS.c.extra)
    .join(_ENROLMENTS, _ENROLMENTS.c.cohort_id == _ASSIGNMENTS.c.cohort_id)
    .join(_COHORTS, _COHORTS.c.cohort_id == _ASSIGNMENTS.c.cohort_id)
    .outerjoin(_EXTENSIONS, and_(_EXTENSIONS.c.assignment_id == _ASSIGNMENTS.c.assignment_id,
                                 _EXTENSIONS.c.subject == bindparam("subject")))
    .outerjoin(_GRANTS, and_(_GRANTS.c.assignment_id == _ASSIGNMENTS.c.assignment_id,
                             _GRANTS.c.subject == bindparam("subject")))
    .where(_ENROLMENTS.c.tenant_id == bindparam("tenant"),
           _ENROLMENTS.c.subject == bindparam("subject"),
           _ASSIGNMENTS.c.tenant_id == bindparam("tenant"),
           _COHORTS.c.tenant_id == bindparam("tenant"),
           _ASSIGNMENTS.c.template_id == bindparam("template")))
_APPLICABLE_ONE = Prepared(_APPLICABLE.where(
    _ASSIGNMENTS.c.assignment_id == bindparam("assignment")))
_APPLICABLE_ALL = Prepared(_APPLICABLE)


def applicable(db: Database, tenant_id: str, subject: str, template_id: str,
               assignment_id: str | None, now: datetime) -> Applicable | None:
    """The assignment governing this spawn: `assignment_id` when given (404 unless it is an
    assignment of this lab in one of the learner's cohorts), else the learner's most
    favourable assignment of the lab — 409 `assignment_ambiguous` naming the classes when
    assignments of more than one of their cohorts are open; None when the lab is assigned
    to none of their cohorts (the plan alone decides then).

    Unless named, an assignment that closed more than MINE_CLOSED_WITHIN ago governs no
    more (review CD): it has left the learner's list, and it held the lab back for ever,
    unseen, after the course had ended."""
    params = {"tenant": tenant_id, "subject": subject, "template": template_id}
    with db.read() as sess:
        if assignment_id is None:
            rows = _APPLICABLE_ALL.execute(sess.connection(), params).all()
            classes = {r.cohort_id: r.name for r in rows
                       if _aware(r.opens_at) <= now
                       < _aware(due_for(r.own_closes_at, r.closes_at)[0])}
            if len(classes) > 1:
                raise _ambiguous(sorted(classes.values()))
        else:
            rows = _APPLICABLE_ONE.execute(
                sess.connection(), {**params, "assignment": assignment_id}).all()
        found = []
        for r in rows:
            due = due_for(r.own_closes_at, r.closes_at)[0]
            if assignment_id is None and _aware(due) < now - MINE_CLOSED_WITHIN:
                continue  # closed long ago and not named: governs no more
            used = attempts.used(sess, r.assignment_id, subject)
            allowed = r.attempts_allowed + (r.extra or 0)  # with extra attempts given them
            found.append(Applicable(r.assignment_id, r.opens_at, due, allowed,
                                    used, r.hints_allowed,
                                    attempts.in_flight(sess, r.assignment_id, subject)
                                    if used >= allowed else 0))
    if assignment_id is not None and not found:
        raise ForgeError("assignment_not_found", 404,
                         "assignment_id: no such assignment of this lab in your cohorts",
                         [{"field": "assignment_id"}])
    return min(found, key=lambda a: _rank(a, now)) if found else None


def scenario_assignment(db: Database, scenario_id: str) -> Applicable | None:
    """The assignment a lab was started for (None for a lab outside any assignment)."""
    with db.read() as sess:
        row = sess.execute(select(Assignment, AssignmentAttempt.subject).join(
            AssignmentAttempt, AssignmentAttempt.assignment_id == Assignment.assignment_id)
            .where(AssignmentAttempt.scenario_id == scenario_id)).first()
        if row is None:
            return None
        a, subject = row
        own = sess.get(AssignmentExtension, (a.assignment_id, subject))
        grant = sess.get(AssignmentAttemptGrant, (a.assignment_id, subject))
        return Applicable(a.assignment_id, a.opens_at,
                          due_for(own.closes_at if own else None, a.closes_at)[0],
                          a.attempts_allowed + (grant.extra if grant else 0),
                          attempts.used(sess, a.assignment_id, subject), a.hints_allowed)
