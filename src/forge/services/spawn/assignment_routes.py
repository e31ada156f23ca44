"""JSON API for a cohort's assignments (issue 18 item 2): instructors assign labs to a
cohort with an opening and due time, attempts and hints allowed, change them and give one
learner more time or more attempts; learners list their assignments in every cohort. The
rules live in `forge.classroom.assignments`, `class_changes` and `attempt_grants`; cohorts
themselves are `cohort_routes`.

Scope as for cohorts: an instructor reaches only cohorts they manage (404 for any other);
a learner gets 403 on management routes of their tenant and 404 elsewhere.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from forge.classroom import assignments, attempt_grants, class_changes, cohorts
from forge.classroom.cohorts import Manager
from forge.classroom.scope import check_subject
from forge.errors import ForgeError, invalid_field
from forge.services.common.openapi import errors
from forge.services.spawn.caller_deps import current_caller, spawn_state
from forge.services.spawn.caller_deps import current_manager as _manager
from forge.services.spawn.cohort_routes import CohortId, Subject
from forge.services.spawn.state import no_plan_warning

router = APIRouter(tags=["classroom"])


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339(value: object) -> object:
    """A time is an RFC 3339 string (2026-12-01T09:00:00Z), never a number or a string of
    one, which pydantic would read as seconds since 1970."""
    if not isinstance(value, str) or _RFC3339.match(value) is None:
        raise ValueError("an RFC 3339 time with a time zone, e.g. 2026-12-01T09:00:00Z")
    return value


Time = Annotated[datetime, BeforeValidator(_rfc3339)]


class AssignmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template_id: str = Field(min_length=1, max_length=64, description="The lab (GET /v1/tracks).")
    opens_at: Time = Field(description="RFC 3339 with a time zone, e.g. 2026-12-01T09:00:00Z")
    closes_at: Time = Field(description="After opens_at; no spawn from then on.")
    # strict: a number and a boolean, not "2" or "yes" converted into one
    attempts_allowed: int = Field(default=1, ge=1, le=assignments.MAX_ATTEMPTS, strict=True)
    hints_allowed: bool = Field(default=True, strict=True)


class AssignmentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opens_at: Time | None = Field(default=None, description="A new opening time.")
    closes_at: Time | None = Field(
        default=None, description="A new due time for the whole cohort (a learner with an "
        "extension gets the later of theirs and this).")
    attempts_allowed: int | None = Field(default=None, ge=1, le=assignments.MAX_ATTEMPTS,
                                         strict=True)
    hints_allowed: bool | None = Field(default=None, strict=True)


class DueBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    closes_at: Time = Field(description="This learner's due time, later than the "
                                        "assignment's (RFC 3339 with a time zone).")


class AttemptsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extra_attempts: int = Field(ge=1, le=attempt_grants.MAX_EXTRA, strict=True, description=(
        "Attempts this learner gets on top of the assignment's (replaces a grant they had)."))
    reason: str = Field(min_length=1, max_length=attempt_grants.MAX_REASON,
                        description="Why: stored with the grant and logged.")


AssignmentId = Annotated[str, Field(max_length=32)]


async def _learners_manager(request: Request, assignment_id: str, subject: str) -> Manager:
    """The caller, who must manage cohorts, once the path's assignment id and learner are
    well-formed (each a 422 naming its field): the start of every per-learner change."""
    who = await _manager(request)
    cohorts.check_public_id("assignment_id", assignment_id)
    check_subject(subject)
    return who


@router.post("/v1/cohorts/{cohort_id}/assignments", status_code=201,
             responses=errors(401, 403, 404, 409))
async def create_assignment(cohort_id: CohortId, body: AssignmentBody, request: Request
                            ) -> dict[str, Any]:
    """Assign a lab to the cohort, open from `opens_at` until `closes_at`, with the
    attempts allowed and whether hints may be revealed. The spawn gate enforces all three.
    A cohort holds at most 200 assignments (409 `cohort_assignments_full`). `plans` names
    the plans whose learners may start the lab (an assignment does not unlock it), with a
    `warning` when there is none."""
    who = await _manager(request)
    state = spawn_state(request)
    row = await run_in_threadpool(lambda: assignments.create_assignment(
        state.ctx.db, who, cohort_id, template_id=body.template_id, opens_at=body.opens_at,
        closes_at=body.closes_at, attempts_allowed=body.attempts_allowed,
        hints_allowed=body.hints_allowed, known_templates=state.templates.keys()))
    plans = state.plans_for(row.template_id)
    out = {**assignments.view(row), "plans": list(plans)}
    if not plans:
        out["warning"] = no_plan_warning(row.template_id)
    return out


@router.get("/v1/cohorts/{cohort_id}/assignments", responses=errors(401, 403, 404))
async def list_assignments(cohort_id: CohortId, request: Request) -> dict[str, Any]:
    """The cohort's assignments, by opening time."""
    who = await _manager(request)
    rows = await run_in_threadpool(assignments.cohort_assignments,
                                   spawn_state(request).ctx.db, who, cohort_id)
    return {"assignments": [assignments.view(a) for a in rows]}


@router.patch("/v1/cohorts/{cohort_id}/assignments/{assignment_id}",
              responses=errors(401, 403, 404))
async def change_assignment(cohort_id: CohortId, assignment_id: AssignmentId,
                            body: AssignmentChange, request: Request) -> dict[str, Any]:
    """Change an assignment's window, attempts allowed or hints (only the fields sent; at
    least one). Labs already started are not touched: a later due time lets learners start
    again, fewer attempts stop further starts, and the dashboard's `late` follows the new
    due time."""
    who = await _manager(request)
    cohorts.check_public_id("assignment_id", assignment_id)
    changes = body.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None:
            raise invalid_field(name, "must not be null (leave it out to keep it)")
    row = await run_in_threadpool(class_changes.update_assignment, spawn_state(request).ctx.db,
                                  who, cohort_id, assignment_id, changes)
    return assignments.view(row)


@router.put("/v1/cohorts/{cohort_id}/assignments/{assignment_id}/learners/{subject}/due",
            responses=errors(401, 403, 404))
async def set_learner_due(cohort_id: CohortId, assignment_id: AssignmentId, subject: Subject,
                          body: DueBody, request: Request) -> dict[str, Any]:
    """Give one learner of the cohort more time for this assignment: their due time is the
    later of this one and the assignment's `closes_at`, which it must be after when given.
    Their start of the lab, their assignment list and the dashboard's `late` use it."""
    who = await _learners_manager(request, assignment_id, subject)
    row = await run_in_threadpool(class_changes.set_due, spawn_state(request).ctx.db, who,
                                  cohort_id, assignment_id, subject, body.closes_at)
    return {"cohort_id": cohort_id, "assignment_id": assignment_id, "subject": subject,
            "closes_at": assignments.iso(row.closes_at), "granted_by": row.granted_by}


@router.delete("/v1/cohorts/{cohort_id}/assignments/{assignment_id}/learners/{subject}/due",
               responses=errors(401, 403, 404))
async def clear_learner_due(cohort_id: CohortId, assignment_id: AssignmentId,
                            subject: Subject, request: Request) -> dict[str, Any]:
    """Take a learner's own due time back: the assignment's applies to them again."""
    who = await _learners_manager(request, assignment_id, subject)
    await run_in_threadpool(class_changes.clear_due, spawn_state(request).ctx.db, who,
                            cohort_id, assignment_id, subject)
    return {"cohort_id": cohort_id, "assignment_id": assignment_id, "subject": subject,
            "due_extended": False}


@router.put("/v1/cohorts/{cohort_id}/assignments/{assignment_id}/learners/{subject}/attempts",
            responses=errors(401, 403, 404))
async def set_learner_attempts(cohort_id: CohortId, assignment_id: AssignmentId,
                               subject: Subject, body: AttemptsBody, request: Request
                               ) -> dict[str, Any]:
    """Give one learner of the cohort `extra_attempts` (1-20) attempts of this assignment
    on top of the class's, with a `reason`: their start of the lab, their assignment list
    and the dashboard use their own allowance. Set again, it replaces the last."""
    who = await _learners_manager(request, assignment_id, subject)
    row = await run_in_threadpool(attempt_grants.grant_attempts, spawn_state(request).ctx.db,
                                  who, cohort_id, assignment_id, subject,
                                  body.extra_attempts, body.reason)
    return {"cohort_id": cohort_id, "assignment_id": assignment_id, "subject": subject,
            "extra_attempts": row.extra, "reason": row.reason, "granted_by": row.granted_by}


@router.delete("/v1/cohorts/{cohort_id}/assignments/{assignment_id}/learners/{subject}"
               "/attempts", responses=errors(401, 403, 404))
async def clear_learner_attempts(cohort_id: CohortId, assignment_id: AssignmentId,
                                 subject: Subject, request: Request) -> dict[str, Any]:
    """Take a learner's extra attempts back: the class's allowance applies to them again."""
    who = await _learners_manager(request, assignment_id, subject)
    await run_in_threadpool(attempt_grants.clear_grant, spawn_state(request).ctx.db, who,
                            cohort_id, assignment_id, subject)
    return {"cohort_id": cohort_id, "assignment_id": assignment_id, "subject": subject,
            "extra_attempts": 0}


@router.get("/v1/cohorts/{cohort_id}/assignments/{assignment_id}/attempt-grants",
            responses=errors(401, 403, 404, 422))
async def list_attempt_grants(
    cohort_id: CohortId, assignment_id: AssignmentId, request: Request,
    after: Annotated[str | None, Query(max_length=128, description=(
        "The `next` of the previous page: the learners after that one."))] = None,
) -> dict[str, Any]:
    """Who has extra attempts of this assignment: per learner how many, the `reason`, who
    gave them and when (`granted_at`), by account id, at most 200 a page; `next` is the
    `after` of the next page (null on the last)."""
    who = await _manager(request)
    cohorts.check_public_id("assignment_id", assignment_id)
    if after is not None:
        try:
            check_subject(after)
        except ForgeError:
            raise invalid_field("after", "an account id, the `next` of the previous "
                                "page") from None
    rows, more = await run_in_threadpool(partial(attempt_grants.grants_of, after=after),
                                         spawn_state(request).ctx.db, who, cohort_id,
                                         assignment_id)
    return {"cohort_id": cohort_id, "assignment_id": assignment_id, "grants": rows,
            "next": more}


@router.get("/v1/assignments", responses=errors(401, 422))
async def my_assignments(
    request: Request,
    after: Annotated[str | None, Query(max_length=32, description=(
        "The `next` of the previous page: the assignments due after that one."))] = None,
) -> dict[str, Any]:
    """Your assignments in every cohort you are in: lab, opening and due time, attempts
    used and allowed, whether hints are allowed. At most 200 a page, by due time: `more`
    is true when you have others (due later) that are not listed, and `next` is the
    `after` that lists them (null on the last page)."""
    caller = (await current_caller(request)).whole_account()
    rows, more = await run_in_threadpool(partial(
        assignments.my_assignments_capped, after=after), spawn_state(request).ctx.db,
        caller.tenant_id, caller.subject)
    return {"assignments": rows, "more": more,
            "next": rows[-1]["assignment_id"] if more else None}
