"""The instructor dashboard's figures (issue 18 item 3): per assignment of a cohort, who
started, who finished, scores, time spent, hints used and the criteria most often failed;
per learner the same for each assignment.

Read in a fixed number of queries whatever the cohort's size (learners, assignments, labs,
state changes, hints), each scoped to the cohorts the instructor manages in the query
itself (`forge.classroom.scope`). Scores are not in the store: they are the scoreboard's
signed results, so the caller fetches them for the labs listed here in one request and
passes them to `figures`.

Per-learner rows come a page at a time (`Page`: `limit` learners after the subject
`after`, by subject); the figures per assignment are always the whole cohort's, so every
lab of the cohort is read whatever the page (a cohort holds at most
`cohorts.MAX_MEMBERS` learners, `assignments.MAX_ASSIGNMENTS` assignments).
"""

from __future__ import annotations

import re
import statistics
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, null, select, union_all

from forge.classroom import attempts
from forge.classroom.assignments import due_for, iso, iso_text, view
from forge.classroom.cohorts import Manager, managed_cohort, managed_ids
from forge.classroom.scope import check_subject, scoped_lab_ids, scoped_labs
from forge.errors import ForgeError, invalid_field
from forge.lifecycle import states
from forge.store.db import Database
from forge.store.models import (
    Assignment,
    AssignmentAttemptGrant,
    AssignmentExtension,
    Enrolment,
    HintReveal,
    ScenarioTransition,
)
from forge.store.timestamps import aware

NOT_STARTED, STARTED, FINISHED = "not started", "started", "finished"
STATUSES = (NOT_STARTED, STARTED, FINISHED)
DEFAULT_PAGE, MAX_PAGE = 100, 500  # learners per page of the dashboard
# Learner rows per page over all assignments (about 330 bytes of JSON each): a cohort with
# more than 20 assignments gets fewer learners per page (200 assignments: 10, 0.7 MB)
# instead of 100 learners' 6.4 MB.
MAX_ROWS = 2000
_LIMIT_RE = re.compile(r"[1-9][0-9]{0,2}")


@dataclass(frozen=True)
class Page:
    """One page of learner rows: at most `limit` learners whose subject sorts after
    `after` (None: from the first)."""

    limit: int = DEFAULT_PAGE
    after: str | None = None
    # Only learners with this status in at least one assignment (None: every learner):
    # "started" lists who began a lab and has no result yet, the ones to look at.
    status: str | None = None

    def of(self, learners: Sequence[str]) -> tuple[list[str], str | None]:
        """This page of `learners` (sorted) and the subject to ask the next page after
        (None when no learner is left)."""
        start = bisect_right(learners, self.after) if self.after is not None else 0
        shown = list(learners[start:start + self.limit])
        more = start + self.limit < len(learners)
        return shown, shown[-1] if more and shown else None



def check_page(limits: Sequence[str], afters: Sequence[str],
               statuses: Sequence[str] = ()) -> Page:
    """The page a query asks for (`limit`, `after`, `status`, each given at most once), or
    422 naming the field: `limit` a whole number 1-MAX_PAGE, `after` an account id,
    `status` one of STATUSES."""
    for name, given in (("limit", limits), ("after", afters), ("status", statuses)):
        if len(given) > 1:
            raise invalid_field(name, "given more than once")
    limit = DEFAULT_PAGE
    if limits:
        if _LIMIT_RE.fullmatch(limits[0]) is None or int(limits[0]) > MAX_PAGE:
            raise invalid_field("limit", f"a whole number from 1 to {MAX_PAGE}")
        limit = int(limits[0])
    after = None
    if afters:
        try:
            after = check_subject(afters[0])
        except ForgeError:
            raise invalid_field("after", "an account id (letters, digits and . _ @ : -), the "
                            "`next` of the previous page") from None
    if statuses and statuses[0] not in STATUSES:
        raise invalid_field("status", "one of " + ", ".join(STATUSES))
    return Page(limit, after, statuses[0] if statuses else None)


@dataclass
class Lab:
    """One lab a learner started for an assignment, with what the store knows of it."""

    scenario_id: str
    assignment_id: str
    subject: str
    attempt: int
    state: str
    created_at: datetime
    running_s: float = 0.0
    hints: int = 0
    # When the learner submitted it: the submit's acceptance (kept by the orchestrator),
    # else its move to grading (a lab graded at its time limit); None while not submitted.
    submitted_at: datetime | None = None
    ran: bool = False  # it was running at some time (a lab failed before that used no attempt)


@dataclass
class CohortLabs:
    """What the store holds of a cohort: its learners, assignments and their labs."""

    cohort_id: str
    name: str
    learners: list[str]
    assignments: list[Assignment]
    labs: list[Lab] = field(default_factory=list)
    # Learners' own due times (extensions): (assignment, subject) -> closes_at.
    dues: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # Extra attempts given to learners: (assignment, subject) -> how many, and why.
    extra: dict[tuple[str, str], int] = field(default_factory=dict)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)
    # Completed labs whose verdict the store records as signed and audited but whose
    # result the scoreboard no longer has (lost by a restore, or removed by retention).
    lost: set[str] = field(default_factory=set)

    def graded_candidates(self) -> list[str]:
        """Ids of the labs that may have a result (completed), to ask the scoreboard for."""
        return [lab.scenario_id for lab in self.labs if lab.state == states.COMPLETED]


def running_seconds(moves: list[tuple[str | None, str, datetime]], now: datetime) -> float:
    """Seconds a lab spent running (from each move into `running` to the next move out of
    it; a lab still running counts until `now`)."""
    total, since = 0.0, None
    for _, to_state, at in moves:
        if to_state == states.RUNNING and since is None:
            since = aware(at)
        elif since is not None and to_state != states.RUNNING:
            total += max(0.0, (aware(at) - since).total_seconds())
            since = None
    if since is not None:
        total += max(0.0, (now - since).total_seconds())
    return total


def cohort_labs(db: Database, who: Manager, cohort_id: str,
                now: datetime | None = None) -> CohortLabs:
    """Learners (sorted by subject, as Python compares strings, on every engine),
    assignments and labs of a cohort `who` manages (404 for any other)."""
    now = now or datetime.now(UTC)
    scope = managed_ids(who, cohort_id)
    with db.read() as sess:
        cohort = managed_cohort(sess, who, cohort_id)
        learners = sorted(sess.scalars(  # not by the database's collation: pages need
            select(Enrolment.subject).where(Enrolment.cohort_id.in_(scope),  # one order
                                            Enrolment.tenant_id == who.tenant_id)))
        assigned = list(sess.scalars(
            select(Assignment).where(Assignment.cohort_id.in_(scope),
                                     Assignment.tenant_id == who.tenant_id)
            .order_by(Assignment.opens_at, Assignment.assignment_id)))
        labs_q = scoped_labs(who, cohort_id)
        labs = [Lab(s.scenario_id, aid, subject, attempt, s.state, s.created_at,
                    submitted_at=_submitted(s.details))
                for aid, subject, attempt, s in sess.execute(labs_q)]
        ids = scoped_lab_ids(who, cohort_id)
        moves: dict[str, list[tuple[str | None, str, datetime]]] = defaultdict(list)
        for sid, src, dst, at in sess.execute(
                select(ScenarioTransition.scenario_id, ScenarioTransition.from_state,
                       ScenarioTransition.to_state, ScenarioTransition.at)
                .where(ScenarioTransition.scenario_id.in_(ids))
                .order_by(ScenarioTransition.scenario_id, ScenarioTransition.at,
                          ScenarioTransition.id)):
            moves[sid].append((src, dst, at))
        hints = {sid: int(n) for sid, n in sess.execute(
            select(HintReveal.scenario_id, func.count()).where(
                HintReveal.scenario_id.in_(ids), HintReveal.tenant_id == who.tenant_id)
            .group_by(HintReveal.scenario_id))}
        dues, extra, reasons = _own_terms(sess, [a.assignment_id for a in assigned])
        sess.expunge_all()
    for lab in labs:
        lab.running_s = running_seconds(moves.get(lab.scenario_id, []), now)
        lab.ran = any(to_state == states.RUNNING for _, to_state, _ in moves.get(
            lab.scenario_id, []))
        lab.hints = int(hints.get(lab.scenario_id, 0))
        if lab.submitted_at is None:
            lab.submitted_at = next((aware(at) for _, to_state, at in moves.get(
                lab.scenario_id, []) if to_state == states.GRADING), None)
    return CohortLabs(cohort.cohort_id, cohort.name, learners, assigned, labs, dues, extra,
                      reasons)


Terms = tuple[dict[tuple[str, str], datetime], dict[tuple[str, str], int],
              dict[tuple[str, str], str]]


def _own_terms(sess: Any, assignment_ids: list[str]) -> Terms:
    """Learners' own due times, and extra attempts of these assignments with their reason,
    by (assignment, subject), in one statement (the dashboard's reads stay a fixed few)."""
    ext, grant = AssignmentExtension, AssignmentAttemptGrant
    rows = sess.execute(union_all(
        select(ext.assignment_id, ext.subject, ext.closes_at, null().label("extra"),
               null().label("reason"))
        .where(ext.assignment_id.in_(assignment_ids)),
        select(grant.assignment_id, grant.subject, null(), grant.extra, grant.reason)
        .where(grant.assignment_id.in_(assignment_ids)))).all()
    dues = {(a, s): at for a, s, at, n, _why in rows if n is None}
    given = [(a, s, n, why) for a, s, _at, n, why in rows if n is not None]
    return (dues, {(a, s): int(n) for a, s, n, _why in given},
            {(a, s): str(why) for a, s, _n, why in given})


def _usable(summary: Mapping[str, Any], lab: Lab, tenant_id: str) -> bool:
    # The scoreboard's answer must be about this learner's lab of this tenant.
    return summary.get("tenant_id") == tenant_id and summary.get("subject") == lab.subject


def _submitted(details: object) -> datetime | None:
    """The submit's acceptance time the orchestrator kept in a scenario's details."""
    value = details.get("submitted_at") if isinstance(details, dict) else None
    try:
        return aware(datetime.fromisoformat(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _late(submitted_at: datetime | None, completed_at: object,
          closes_at: datetime) -> bool | None:
    """Whether a result came after the assignment's due time: judged by when its lab was
    submitted, else (a result from before that was kept) when it was graded; None when
    neither time can be read. Grading waits its turn behind other submits, so a class
    submitting at the due time would otherwise be marked late by the queue. Closing stops
    new starts only: a lab started before it may still be submitted, and the instructor
    sees that it was late."""
    if submitted_at is not None:
        return aware(submitted_at) > aware(closes_at)
    try:
        done = datetime.fromisoformat(str(completed_at))
    except ValueError:
        return None
    return aware(done) > aware(closes_at)


def best_result(labs: Sequence[Lab], scores: Mapping[str, Mapping[str, Any]],
                tenant_id: str) -> tuple[Mapping[str, Any], Lab] | None:
    """A learner's best graded lab of an assignment and its result: the highest score of
    their labs' results (the earliest attempt of equal ones), only results about this
    learner's lab of this tenant; None when nothing is graded. The dashboard's "best score",
    and the score the LMS grade book is sent (`forge.classroom.lti_grade_outbox.owe_grade`)."""
    graded = [(scores[lab.scenario_id], lab) for lab in labs
              if lab.scenario_id in scores and _usable(scores[lab.scenario_id], lab, tenant_id)]
    return max(graded, key=lambda g: (float(g[0]["score"]), -g[1].attempt), default=None)


def _cell(labs: list[Lab], scores: Mapping[str, Mapping[str, Any]], tenant_id: str,
          closes_at: datetime, extended: bool) -> dict[str, Any]:
    """One learner's figures for one assignment due for them at ``closes_at`` (their own
    due time when ``extended``)."""
    best = best_result(labs, scores, tenant_id)
    out: dict[str, Any] = {
        "status": FINISHED if best else STARTED if labs else NOT_STARTED,
        "attempts_used": sum(attempts.counts(lab.state, lab.ran) for lab in labs),
        "started_at": iso(min(lab.created_at for lab in labs)) if labs else None,
        "time_spent_s": round(sum(lab.running_s for lab in labs)),
        "hints_used": sum(lab.hints for lab in labs),
        "due_at": iso(closes_at), "due_extended": extended,
        "score": None, "passed": None, "total": None, "submitted_at": None,
        "finished_at": None, "late": None,
        "failed_criteria": [], "labs": [lab.scenario_id for lab in labs],
    }
    if best is not None:
        summary, lab = best
        out.update(score=round(float(summary["score"]), 4), passed=int(summary["passed"]),
                   total=int(summary["total"]),
                   submitted_at=iso(lab.submitted_at) if lab.submitted_at else None,
                   finished_at=iso_text(summary.get("completed_at")),
                   late=_late(lab.submitted_at, summary.get("completed_at"), closes_at),
                   failed_criteria=[str(c) for c in summary.get("failed") or []],
                   graded_lab=lab.scenario_id)
    return out


def _figures_of(a: Assignment, cells: Mapping[str, dict[str, Any]], learners: int,
                describe: Callable[[str, str], str]) -> dict[str, Any]:
    """An assignment's totals over the whole cohort, from the cells of the learners who
    started it (one who did not adds only to `learners`)."""
    done = [c for c in cells.values() if c["status"] == FINISHED]
    begun = [c for c in cells.values() if c["status"] != NOT_STARTED]
    failed = Counter(c for r in done for c in r["failed_criteria"])
    return {
        **view(a), "learners": learners, "started": len(begun), "finished": len(done),
        "finished_late": sum(1 for r in done if r["late"]),
        "mean_score": round(statistics.fmean(r["score"] for r in done), 4) if done else None,
        "median_time_spent_s": round(statistics.median(r["time_spent_s"] for r in begun))
        if begun else None,
        "hints_used": sum(r["hints_used"] for r in cells.values()),
        "most_failed": [{"criterion": c, "description": describe(a.template_id, c),
                         "learners": n}
                        for c, n in sorted(failed.items(), key=lambda x: (-x[1], x[0]))],
    }


def labs_by_cell(data: CohortLabs) -> dict[str, dict[str, list[Lab]]]:
    """The labs of enrolled learners by assignment and learner, each list by attempt."""
    enrolled = set(data.learners)
    by_cell: dict[str, dict[str, list[Lab]]] = defaultdict(lambda: defaultdict(list))
    for lab in sorted(data.labs, key=lambda x: (x.attempt, x.scenario_id)):
        if lab.subject in enrolled:
            by_cell[lab.assignment_id][lab.subject].append(lab)
    return by_cell


def learner_cell(data: CohortLabs, scores: Mapping[str, Mapping[str, Any]], tenant_id: str,
                 a: Assignment, subject: str, labs: list[Lab]) -> dict[str, Any]:
    """One learner's figures for assignment `a`, judged against their own due time, with
    their own allowance (the class's attempts and any extra given them, with the reason
    the instructor gave: the page shows who has more and why)."""
    due, extended = due_for(data.dues.get((a.assignment_id, subject)), a.closes_at)
    extra = data.extra.get((a.assignment_id, subject), 0)
    cell = _cell(labs, scores, tenant_id, due, extended)
    return {**cell, "attempts_allowed": a.attempts_allowed + extra, "extra_attempts": extra,
            "extra_reason": data.reasons.get((a.assignment_id, subject)),
            # graded, but no result to show: `started` alone read as work not handed in
            "result_missing": cell["score"] is None
            and any(lab.scenario_id in data.lost for lab in labs)}


GRANTS_SHOWN = 50  # extra-attempt grants listed per assignment (the API lists them all)


def _grants_of(data: CohortLabs) -> dict[str, dict[str, Any]]:
    """Per assignment, who of the class has extra attempts, how many and why (the first
    GRANTS_SHOWN by account id, on every page) and how many have them: the page shows
    them without paging through every learner. A learner taken out of the class has no
    grant left (`staff.drop_enrolment`)."""
    by: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for (aid, subject), n in sorted(data.extra.items()):
        by[aid].append((subject, n))
    return {aid: {"attempt_grants": [{"subject": s, "extra_attempts": n,
                                      "reason": data.reasons.get((aid, s))}
                                     for s, n in given[:GRANTS_SHOWN]],
                  "attempt_grants_total": len(given)} for aid, given in by.items()}


def figures(data: CohortLabs, scores: Mapping[str, Mapping[str, Any]], tenant_id: str,
            describe: Callable[[str, str], str], page: Page | None = None) -> dict[str, Any]:
    """The dashboard: per assignment its totals (the whole cohort's) and one row per
    enrolled learner of `page` (every learner without one, as the CSV has them). A page
    holds at most MAX_ROWS rows over all assignments: fewer learners than asked when the
    cohort has many assignments (`page_size` says how many).
    `scores` is the scoreboard's summary by lab id; `describe(lab, criterion)` its text."""
    by_cell = labs_by_cell(data)
    cells_of = {a.assignment_id: {s: learner_cell(data, scores, tenant_id, a, s, labs)
                                  for s, labs in by_cell.get(a.assignment_id, {}).items()}
                for a in data.assignments}
    learners = data.learners
    if page is not None:
        if page.status is not None:  # with that status in at least one assignment
            learners = [s for s in learners if any(
                cells.get(s, {"status": NOT_STARTED})["status"] == page.status
                for cells in cells_of.values())]
        page = Page(min(page.limit, max(1, MAX_ROWS // max(1, len(data.assignments)))),
                    page.after, page.status)
    shown, after = (page or Page(len(learners) or 1)).of(learners)
    out = []
    grants = _grants_of(data)
    for a in data.assignments:
        cells = cells_of[a.assignment_id]
        rows = [{"subject": s, **(cells.get(s) or learner_cell(data, scores, tenant_id, a, s,
                                                                []))} for s in shown]
        out.append({**_figures_of(a, cells, len(data.learners), describe),
                    **grants.get(a.assignment_id, {"attempt_grants": [],
                                                   "attempt_grants_total": 0}),
                    "rows": rows})
    return {"cohort_id": data.cohort_id, "name": data.name, "learners": shown,
            "total_learners": len(data.learners), "matching_learners": len(learners),
            "status": page.status if page is not None else None, "next": after,
            "page_size": page.limit if page is not None else len(shown), "assignments": out}
