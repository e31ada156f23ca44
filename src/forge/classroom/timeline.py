"""A learner's timeline in a cohort (issue 18 item 3): for each lab they started for one of
the cohort's assignments, its state changes (the move to grading is their submission), the
task checks they ran and the hints they revealed, in time order.

Read from the store's records of labs (transitions, task check runs, hint reveals) in a
fixed number of queries, each scoped to the cohorts the instructor manages in the query
itself; a learner not enrolled in the cohort is 404 like any other unknown id.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from forge.classroom.assignments import iso, iso_text
from forge.classroom.cohorts import Manager, managed_cohort, managed_ids
from forge.classroom.scope import (
    check_subject,
    scoped_lab_ids,
    scoped_labs,
)
from forge.errors import ForgeError
from forge.lifecycle import states
from forge.store.db import Database
from forge.store.models import (
    Assignment,
    Enrolment,
    HintReveal,
    Scenario,
    ScenarioTransition,
    TaskCheckRun,
)
from forge.store.timestamps import aware

MAX_REASON = 200


def _event(at: Any, kind: str, **facts: Any) -> dict[str, Any]:
    return {"at": iso(at), "kind": kind, **facts}


def learner_timeline(db: Database, who: Manager, cohort_id: str, subject: str
                     ) -> dict[str, Any]:
    """The learner's labs in this cohort with their events (404 `learner_not_found` when
    they are not enrolled in a cohort `who` manages)."""
    check_subject(subject)
    scope = managed_ids(who, cohort_id)
    events: dict[str, list[tuple[Any, int, dict[str, Any]]]] = defaultdict(list)
    with db.read() as sess:
        cohort = managed_cohort(sess, who, cohort_id)
        head = {"cohort_id": cohort.cohort_id, "cohort": cohort.name, "subject": subject}
        enrolled = sess.scalar(select(Enrolment.subject).where(
            Enrolment.cohort_id.in_(scope), Enrolment.tenant_id == who.tenant_id,
            Enrolment.subject == subject))
        if enrolled is None:
            raise ForgeError("learner_not_found", 404, "subject: no such learner in this cohort",
                             [{"field": "subject"}])
        labs, submits = [], {}
        for aid, _, attempt, s, template in sess.execute(
                scoped_labs(who, cohort_id, subject).add_columns(Assignment.template_id)
                .order_by(Scenario.created_at, Scenario.scenario_id)):
            labs.append({"scenario_id": s.scenario_id, "assignment_id": aid,
                         "template_id": template, "attempt": attempt, "state": s.state,
                         "started_at": iso(s.created_at)})
            kept = (s.details or {}).get("submitted_at")
            if isinstance(kept, str):  # the submit's acceptance (grading may come later)
                submits[s.scenario_id] = kept
        ids = scoped_lab_ids(who, cohort_id, subject)
        for t in sess.scalars(select(ScenarioTransition).where(
                ScenarioTransition.scenario_id.in_(ids))):
            kind = "submitted" if t.to_state == states.GRADING else "state"
            facts = {"submitted_at": iso_text(submits[t.scenario_id])} \
                if kind == "submitted" and t.scenario_id in submits else {}
            events[t.scenario_id].append((t.at, t.id, _event(
                t.at, kind, **{"from": t.from_state}, to=t.to_state,
                reason=(t.reason or "")[:MAX_REASON], **facts)))
        for c in sess.scalars(select(TaskCheckRun).where(
                TaskCheckRun.scenario_id.in_(ids), TaskCheckRun.tenant_id == who.tenant_id)):
            events[c.scenario_id].append((c.at, c.id, _event(
                c.at, "check", criterion=c.criterion, passed=c.passed)))
        for h in sess.scalars(select(HintReveal).where(
                HintReveal.scenario_id.in_(ids), HintReveal.tenant_id == who.tenant_id)):
            events[h.scenario_id].append((h.revealed_at, h.hint_index, _event(
                h.revealed_at, "hint", hint=h.hint_index + 1, criterion=h.criterion)))
    for lab in labs:
        found = sorted(events.get(lab["scenario_id"], []), key=lambda e: (aware(e[0]), e[1]))
        lab["events"] = [e[2] for e in found]
    return {**head, "labs": labs}
