"""Cohorts, who manages them, and how learners join: CSV, IdP group, or an invite link
(`cohort_invites`)."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from forge.classroom.cohort_names import MAX_NAME, writable
from forge.errors import ForgeError, invalid_field
from forge.store.db import Database
from forge.store.models import (
    Cohort,
    CohortStaff,
    Enrolment,
)
from forge.store.role_names import INSTRUCTOR, OPERATOR

log = logging.getLogger("forge.classroom.cohorts")

VIA = ("invite", "csv", "group")
# Learners one cohort may hold, however they come in (invite, roster, IdP group, LMS):
# every dashboard read and CSV export of a cohort is bounded by it.
MAX_MEMBERS = 2000
MAX_COHORT_PAGE = 500  # cohorts listed per page (GET /v1/cohorts, /teach)
MAX_GROUP = 128
COHORT_ID_RE = re.compile(r"coh-[0-9a-f]{16}")
ASSIGNMENT_ID_RE = re.compile(r"asg-[0-9a-f]{16}")
INVITE_ID_RE = re.compile(r"inv-[0-9a-f]{16}")


@dataclass(frozen=True)
class Manager:
    """Who asks to manage a cohort: tenant, subject and their role in that tenant."""

    tenant_id: str
    subject: str
    role: str


def _not_found() -> ForgeError:
    # Same answer for "no such cohort" and "not yours": nothing about other cohorts leaks.
    return ForgeError("cohort_not_found", 404, "cohort_id: no such cohort",
                      [{"field": "cohort_id"}])


def new_id(prefix: str) -> str:
    """A random public id such as `coh-…` (not a secret)."""
    return f"{prefix}-{secrets.token_hex(8)}"


def need_staff_role(who: Manager) -> None:
    """403 unless `who` is an instructor or operator of their tenant."""
    if who.role not in (INSTRUCTOR, OPERATOR):
        raise ForgeError("instructor_required", 403, "only an instructor or operator of this "
                         "tenant may manage cohorts or see their dashboards")


def check_cohort_id(cohort_id: object) -> str:
    """A well-formed cohort id (422 naming the field otherwise), checked before any lookup
    by every read and write of a cohort, so a malformed id gets the same answer on all."""
    if not isinstance(cohort_id, str) or COHORT_ID_RE.fullmatch(cohort_id) is None:
        raise invalid_field("cohort_id", "expected coh-<16 hex digits>")
    return cohort_id


def check_public_id(field: str, value: object) -> str:
    """A well-formed assignment or invite id (`asg-`/`inv-` + 16 hex; 422 naming `field`
    otherwise), before any lookup: an id that cannot exist never reaches the store (a NUL
    in it was a 500 on PostgreSQL, whose text cannot hold one)."""
    kind = {"assignment_id": ("asg", ASSIGNMENT_ID_RE), "invite_id": ("inv", INVITE_ID_RE)}
    prefix, pattern = kind[field]
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise invalid_field(field, f"expected {prefix}-<16 hex digits>")
    return value


def managed_ids(who: Manager, cohort_id: str | None = None) -> Select[Any]:
    """The ids of the cohorts `who` manages (one of them when `cohort_id` is given), as a
    subquery: every cohort of the tenant for an operator, those they are staff of else."""
    query = select(Cohort.cohort_id).where(Cohort.tenant_id == who.tenant_id)
    if cohort_id is not None:
        query = query.where(Cohort.cohort_id == cohort_id)
    if who.role != OPERATOR:
        query = query.join(CohortStaff, CohortStaff.cohort_id == Cohort.cohort_id).where(
            CohortStaff.subject == who.subject)
    return query


def create_cohort(db: Database, who: Manager, name: str, idp_group: str | None = None
                  ) -> Cohort:
    """A new cohort of `who`'s tenant, managed by `who` (403 for a learner). The name and
    the group lose surrounding spaces: group enrolment matches the group exactly, and a
    pasted "net-101 " matched nobody, silently."""
    need_staff_role(who)
    name = name.strip() if isinstance(name, str) else ""
    idp_group = idp_group.strip() if isinstance(idp_group, str) else idp_group
    if not name or len(name) > MAX_NAME or not writable(name):
        raise ForgeError("validation_error", 422, "invalid request: name",
                         [{"field": "name", "problem": f"1-{MAX_NAME} characters, "
                           "no control character or bidi override"}])
    if idp_group is not None and not (0 < len(idp_group) <= MAX_GROUP
                                      and writable(idp_group)):
        raise ForgeError("validation_error", 422, "invalid request: idp_group",
                         [{"field": "idp_group", "problem": f"1-{MAX_GROUP} characters, "
                           "no control character or bidi override"}])
    cohort = Cohort(cohort_id=new_id("coh"), tenant_id=who.tenant_id, name=name,
                    created_by=who.subject, idp_group=idp_group, created_at=datetime.now(UTC))
    with db.session() as sess:
        sess.add(cohort)
        sess.flush()
        sess.add(CohortStaff(cohort_id=cohort.cohort_id, subject=who.subject))
    return cohort


def managed_cohort(sess: Session, who: Manager, cohort_id: str) -> Cohort:
    """The cohort if `who` may manage it: 422 for a malformed id, 403 for a learner (before
    any lookup, so whether the id exists is never told to them), 404 when it is another
    tenant's or (for an instructor) not theirs."""
    check_cohort_id(cohort_id)
    need_staff_role(who)
    row = sess.get(Cohort, cohort_id)
    if row is None or row.tenant_id != who.tenant_id:
        raise _not_found()
    if who.role == OPERATOR:
        return row
    if sess.get(CohortStaff, (cohort_id, who.subject)) is None:
        raise _not_found()
    return row


def cohorts_of(db: Database, who: Manager, *, limit: int = MAX_COHORT_PAGE,
               after: str | None = None) -> list[Cohort]:
    """The cohorts `who` manages (all of the tenant's for an operator), newest first, at
    most `limit` of them; `after`: those older than that cohort (the last of the previous
    page; 422 naming the field unless it is one `who` manages). Cohorts are never deleted
    and every LMS course makes one, so the list is read a page at a time."""
    need_staff_role(who)
    with db.read() as sess:
        stmt = select(Cohort).where(Cohort.cohort_id.in_(managed_ids(who)))
        if after is not None:
            anchor = sess.scalar(select(Cohort).where(
                Cohort.cohort_id.in_(managed_ids(who, after)))) \
                if COHORT_ID_RE.fullmatch(after) else None
            if anchor is None:
                raise ForgeError("validation_error", 422, "after: not a cohort you manage",
                                 [{"field": "after", "problem": "the last cohort id of the "
                                                                "previous page"}])
            stmt = stmt.where(or_(Cohort.created_at < anchor.created_at,
                                  and_(Cohort.created_at == anchor.created_at,
                                       Cohort.cohort_id < anchor.cohort_id)))
        rows = list(sess.scalars(stmt.order_by(Cohort.created_at.desc(),
                                               Cohort.cohort_id.desc()).limit(limit)))
        sess.expunge_all()  # kept loaded after the read's rollback
        return rows


def instructors_of(db: Database, who: Manager, cohort_ids: Sequence[str]
                   ) -> dict[str, list[str]]:
    """Who manages each of `cohort_ids` that `who` manages (their account ids, sorted), in
    one query: an instructor sees who else reads the class's dashboards (a colleague they
    added, a teacher a roster sync added) and whom to take off."""
    out: dict[str, list[str]] = {cohort_id: [] for cohort_id in cohort_ids}
    if not cohort_ids:
        return out
    with db.read() as sess:
        for cohort_id, subject in sess.execute(
                select(CohortStaff.cohort_id, CohortStaff.subject).where(
                    CohortStaff.cohort_id.in_(list(cohort_ids)),
                    CohortStaff.cohort_id.in_(managed_ids(who)))
                .order_by(CohortStaff.cohort_id, CohortStaff.subject)):
            out.setdefault(cohort_id, []).append(subject)
    return out


def learner_counts(db: Database, who: Manager, cohort_ids: Sequence[str]) -> dict[str, int]:
    """How many learners each of `cohort_ids` holds (those `who` manages), in one query."""
    if not cohort_ids:
        return {}
    with db.read() as sess:
        rows = sess.execute(
            select(Enrolment.cohort_id, func.count()).where(
                Enrolment.cohort_id.in_(list(cohort_ids)),
                Enrolment.cohort_id.in_(managed_ids(who)))
            .group_by(Enrolment.cohort_id)).all()
    return {str(cid): int(n) for cid, n in rows}


def cohort_full(cohort_id: str, held: int, adding: int) -> ForgeError:
    """409 `cohort_full`: enrolling `adding` more learners would take the cohort past
    MAX_MEMBERS (nothing of the request is enrolled)."""
    return ForgeError(
        "cohort_full", 409,
        f"cohort_id: a cohort holds at most {MAX_MEMBERS} learners; it has {held}, and this "
        f"would add {adding}: nobody was enrolled",
        [{"field": "cohort_id", "problem": f"at most {MAX_MEMBERS} learners",
          "learners": held, "adding": adding}])


def lock_cohort(sess: Session, cohort_id: str) -> None:
    """Hold the cohort's row until the transaction ends, so the count of its learners (or
    assignments) and the rows added after it are one step: two enrolments at MAX-1 never
    both pass (PostgreSQL: SELECT ... FOR NO KEY UPDATE, which still lets other rows
    naming the cohort be written; SQLite runs one writer at a time already)."""
    sess.execute(select(Cohort.cohort_id).where(Cohort.cohort_id == cohort_id)
                 .with_for_update(key_share=True))


def learner_count(sess: Session, cohort_id: str) -> int:
    """How many learners the cohort holds (read under `lock_cohort` to add more)."""
    return int(sess.scalar(select(func.count()).select_from(Enrolment).where(
        Enrolment.cohort_id == cohort_id)) or 0)


def enrol_learner(sess: Session, cohort_id: str, tenant_id: str, subject: str, via: str,
           now: datetime) -> bool:
    """Enrol unless enrolled already or an instructor of the cohort (read under its lock:
    one made instructor meanwhile is never seated); True when this call enrolled them.
    409 `cohort_full` (nothing added) when the cohort is full, 409 `cohort_case_clash`
    when the cohort has them in other letter case (`refuse_case_clash`)."""
    # One enrolment of a cohort at a time (PostgreSQL): the same learner enrolled at once
    # by a list, an invite and a sign-in made the loser fail on the key (a 500), and two
    # joins at MAX_MEMBERS - 1 would both have counted room for one.
    lock_cohort(sess, cohort_id)
    if (sess.get(Enrolment, (cohort_id, subject)) is not None
            or sess.get(CohortStaff, (cohort_id, subject)) is not None):
        return False
    refuse_case_clash(sess, cohort_id, subject)
    held = learner_count(sess, cohort_id)
    if held >= MAX_MEMBERS:
        raise cohort_full(cohort_id, held, 1)
    sess.add(Enrolment(cohort_id=cohort_id, subject=subject, tenant_id=tenant_id,
                       via=via, enrolled_at=now))
    return True


@dataclass(frozen=True)
class Enrolled:
    """What a roster did: how many it newly enrolled, which of the cohort's own
    instructors it listed (never enrolled: a roster exported from an LMS lists the
    teacher too, and a learner of their own class would count on its dashboard) and how
    many of its learners were in the cohort already: a teacher who sent 200 lines and
    read "195 newly enrolled" alone took five for lost."""

    added: int
    instructors: tuple[str, ...] = ()
    already: int = 0


MAX_CLASHES_SHOWN = 20  # clashes named in one answer's details


def case_twin(sess: Session, cohort_id: str, subject: str) -> tuple[str, str] | None:
    """A learner or instructor of the cohort whose account id is `subject` in other letter
    case, as (their id, "learner" | "instructor"); None when there is none or `subject`
    itself is one (account ids are ASCII: SQL's lower() is their casefold)."""
    folded = subject.lower()
    for table, kind in ((Enrolment, "learner"), (CohortStaff, "instructor")):
        held = sess.scalars(select(table.subject).where(
            table.cohort_id == cohort_id, func.lower(table.subject) == folded)).all()
        if subject in held:
            return None
        if held:
            return str(held[0]), kind
    return None


def refuse_case_clashes(wanted: Sequence[str], learners: set[str], staff: set[str]) -> None:
    """422 `csv_invalid` (nothing enrolled) when a roster names a learner or instructor of
    the cohort in other letter case (`STU002@UNI.EDU` beside the enrolled
    `stu002@uni.edu`, an LMS export in capitals): account ids are case-sensitive, so that
    line made a second learner who never signs in, `not started` on the dashboard for the
    whole term, while the instructor counted the class complete."""
    known = {s.casefold(): (s, "learner") for s in learners}
    known.update({s.casefold(): (s, "instructor") for s in staff})
    clashes = [(s, *known[s.casefold()]) for s in wanted
               if s not in learners and s not in staff and s.casefold() in known]
    if not clashes:
        return
    problems = [f'"{s}" is the class\'s {kind} "{held}" in other letter case: account ids '
                "are case-sensitive, write it as their account is spelled"
                for s, held, kind in clashes]
    more = f"; {len(clashes) - 1} more like it" if len(clashes) > 1 else ""
    raise ForgeError("csv_invalid", 422, f"csv: {problems[0]}{more}; nobody was enrolled",
                     [{"field": "file", "subject": s, "problem": p} for (s, _, _), p in
                      list(zip(clashes, problems, strict=True))[:MAX_CLASHES_SHOWN]])


def refuse_case_clash(sess: Session, cohort_id: str, subject: str) -> None:
    """409 `cohort_case_clash` when the cohort has a learner or instructor spelled like
    `subject` in other letter case (`case_twin`). A roster refuses such a line
    (`refuse_case_clashes`); joining by an invite link or an IdP group did not: `Lea`
    beside the enrolled `lea` made two learners an instructor could not tell apart on the
    dashboard (one extended, graded or taken out for the other). The other spelling is
    logged, not named to the one joining: it may be another person's account."""
    twin = case_twin(sess, cohort_id, subject)
    if twin is None:
        return
    held, kind = twin
    log.warning("enrolment refused: cohort=%s subject=%s is the class's %s %s in other "
                "letter case", cohort_id, subject, kind, held)
    raise ForgeError("cohort_case_clash", 409, (
        f'invite: this class already lists "{subject}" in other letter case; account '
        "ids are case-sensitive, so joining would make a second learner beside that "
        "one. Ask your instructor to take the other spelling out of the class, then "
        "open the link again"), [{"field": "invite"}])


def enrol_subjects(db: Database, who: Manager, cohort_id: str, subjects: Sequence[str],
                   via: str = "csv") -> Enrolled:
    """Enrol every subject but the cohort's instructors in one transaction (all or none).
    422 `csv_invalid` (nobody enrolled) when one is a learner or instructor of the cohort
    in other letter case (`refuse_case_clashes`); 409 `cohort_full` (nobody enrolled) when
    those not enrolled yet would take the cohort past MAX_MEMBERS."""
    now = datetime.now(UTC)
    wanted = list(dict.fromkeys(subjects))
    with db.session() as sess:
        managed_cohort(sess, who, cohort_id)
        lock_cohort(sess, cohort_id)  # the count and the inserts: one step
        staff = set(sess.scalars(select(CohortStaff.subject).where(
            CohortStaff.cohort_id == cohort_id)))
        instructors = tuple(s for s in wanted if s in staff)
        wanted = [s for s in wanted if s not in staff]
        # Every learner of the cohort (at most MAX_MEMBERS): the count, and the check
        # of letter case below, in one read.
        held = set(sess.scalars(select(Enrolment.subject).where(
            Enrolment.cohort_id == cohort_id)))
        refuse_case_clashes(wanted, held, staff)
        new = [s for s in wanted if s not in held]
        count = len(held)
        if count + len(new) > MAX_MEMBERS:
            raise cohort_full(cohort_id, count, len(new))
        sess.add_all(Enrolment(cohort_id=cohort_id, subject=s, tenant_id=who.tenant_id,
                               via=via, enrolled_at=now) for s in new)
    return Enrolled(len(new), instructors, len(wanted) - len(new))


def enrol_by_groups(db: Database, tenant_id: str, subject: str, groups: Sequence[str]) -> int:
    """Enrol a person in every cohort of the tenant naming one of their IdP groups (called
    at sign-in), but those they are an instructor of; the number of cohorts newly joined.
    A full cohort is skipped with a warning (the sign-in goes on: the person is in the
    group, the class has no room)."""
    if not groups:
        return 0
    now = datetime.now(UTC)
    joined = 0
    with db.session() as sess:
        ids = list(sess.scalars(select(Cohort.cohort_id).where(
            Cohort.tenant_id == tenant_id, Cohort.idp_group.in_(list(groups)))))
        staff_of = set(sess.scalars(select(CohortStaff.cohort_id).where(
            CohortStaff.cohort_id.in_(ids), CohortStaff.subject == subject)))
        for cohort_id in sorted(ids):  # one lock order: no deadlock
            if cohort_id in staff_of:  # an instructor of the class in its group: not a learner
                continue
            try:
                joined += enrol_learner(sess, cohort_id, tenant_id, subject, "group", now)
            except ForgeError as exc:
                if exc.code not in ("cohort_full", "cohort_case_clash"):
                    raise
                # Refused before any write: the transaction goes on for the other cohorts.
                log.warning("group enrolment skipped: tenant=%s cohort=%s: %s", tenant_id,
                            cohort_id, f"is full ({MAX_MEMBERS} learners)"
                            if exc.code == "cohort_full" else "has them in other letter case")
    return joined


def enrolled_cohorts(db: Database, tenant_id: str, subject: str) -> list[str]:
    """The ids of the cohorts (tenant, subject) is enrolled in."""
    with db.read() as sess:
        return list(sess.scalars(select(Enrolment.cohort_id).where(
            Enrolment.tenant_id == tenant_id, Enrolment.subject == subject)))


def members(db: Database, who: Manager, cohort_id: str) -> list[Enrolment]:
    """The cohort's learners (for its managers)."""
    with db.read() as sess:
        managed_cohort(sess, who, cohort_id)
        rows = list(sess.scalars(select(Enrolment).where(Enrolment.cohort_id == cohort_id)
                                 .order_by(Enrolment.subject)))
        sess.expunge_all()
        return rows
