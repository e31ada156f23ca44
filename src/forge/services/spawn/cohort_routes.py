"""JSON API for cohorts (issue 18 item 2): instructors create cohorts, invite links, CSV
enrolment and co-instructors, and take learners out; learners join by invite. The rules
live in `forge.classroom`; these routes identify the caller, read their role in the tenant
and map the answers. A cohort's assignments are `assignment_routes`.

Scope: an instructor sees only cohorts they manage (404 for any other, of their tenant or
another); a learner gets 403 on management routes of their tenant and 404 elsewhere.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from forge.classroom import assignments, class_changes, cohort_invites, cohorts, staff
from forge.classroom.cohort_names import MAX_NAME
from forge.classroom.roster_csv import MAX_BYTES, parse_roster
from forge.classroom.scope import check_subject
from forge.errors import ForgeError
from forge.identity.roles import LEARNER, role_of
from forge.services.common.errors import media_type
from forge.services.common.openapi import errors
from forge.services.spawn.caller_deps import current_manager as _manager
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.site_links import api_link
from forge.store.models import Cohort, CohortInvite

router = APIRouter(tags=["classroom"])
CohortId = Annotated[str, Field(min_length=1, max_length=32)]


class CohortBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=MAX_NAME, description="Shown to learners.")
    idp_group: str | None = Field(
        default=None, min_length=1, max_length=cohorts.MAX_GROUP,
        description="A group of the identity provider: who signs in with it is enrolled.")


class InviteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int = Field(default=14, ge=1, le=cohort_invites.MAX_INVITE_DAYS, strict=True,
                      description="How long the link stays usable.")


class JoinBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invite: str = Field(min_length=1, max_length=100, description="The invite link's code.")


class InstructorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:-]*$",
                         description="The account id of a person of your tenant.")
    confirm: bool = Field(default=False, strict=True, description=(
        "Required (true) when they are a learner of this cohort: they then stop being one "
        "and leave its dashboard and grade export (409 `enrolled_learner` otherwise)."))


Subject = Annotated[str, Field(min_length=1, max_length=128)]


def _cohort_view(row: Cohort) -> dict[str, Any]:
    return {"cohort_id": row.cohort_id, "name": row.name, "idp_group": row.idp_group,
            "created_by": row.created_by}


@router.post("/v1/cohorts", status_code=201, responses=errors(401, 403))
async def create_cohort(body: CohortBody, request: Request) -> dict[str, Any]:
    """Create a cohort you manage (instructors and operators; 403 for learners)."""
    who = await _manager(request)
    db = spawn_state(request).ctx.db
    row = await run_in_threadpool(cohorts.create_cohort, db, who, body.name, body.idp_group)
    return _cohort_view(row)


@router.get("/v1/cohorts", responses=errors(401, 403, 422))
async def list_cohorts(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=cohorts.MAX_COHORT_PAGE,
                                description="Cohorts per page, newest first.")] = 100,
    after: Annotated[str | None, Query(max_length=32, description=(
        "The `next` of the previous page: the cohorts created before that one."))] = None,
) -> dict[str, Any]:
    """The cohorts you manage (an operator: every cohort of the tenant), newest first, a
    page at a time; `next` is the `after` of the next page (null on the last)."""
    who = await _manager(request)
    rows = await run_in_threadpool(partial(cohorts.cohorts_of, limit=limit + 1, after=after),
                                   spawn_state(request).ctx.db, who)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"cohorts": [_cohort_view(r) for r in rows],
            "next": rows[-1].cohort_id if more else None}


@router.get("/v1/cohorts/{cohort_id}", responses=errors(401, 403, 404))
async def get_cohort(cohort_id: CohortId, request: Request) -> dict[str, Any]:
    """A cohort you manage, with its instructors, learners and assignments; 404 for any
    other."""
    who = await _manager(request)
    db = spawn_state(request).ctx.db

    def read() -> dict[str, Any]:
        people = cohorts.members(db, who, cohort_id)
        with db.read() as sess:
            row = cohorts.managed_cohort(sess, who, cohort_id)
            out = _cohort_view(row)
        out["instructors"] = cohorts.instructors_of(db, who, [cohort_id])[cohort_id]
        out["learners"] = [{"subject": m.subject, "via": m.via} for m in people]
        out["assignments"] = [assignments.view(a)
                              for a in assignments.cohort_assignments(db, who, cohort_id)]
        return out

    return await run_in_threadpool(read)


@router.post("/v1/cohorts/{cohort_id}/invites", status_code=201,
             responses=errors(401, 403, 404, 409))
async def make_invite(cohort_id: CohortId, request: Request,
                      body: InviteBody | None = None) -> dict[str, Any]:
    """A new invite link: share `url`; every learner of your tenant who opens it while
    signed in joins the cohort, until `expires_at` or until you revoke it. The code is
    shown only now (only its hash is kept). 409 `cohort_invites_full` with 50 usable
    links already (revoke one first: every usable link stays listed)."""
    who = await _manager(request)
    db = spawn_state(request).ctx.db
    days = (body or InviteBody()).days  # no body: every field has its default
    invite, token = await run_in_threadpool(cohort_invites.make_invite, db, who, cohort_id, days)
    return {"invite_id": invite.invite_id, "invite": token,
            "url": api_link(request, f"/join/{token}"),
            "expires_at": assignments.iso(invite.expires_at)}


def invite_view(invite: CohortInvite) -> dict[str, Any]:
    """An invite link as listed (never its code: only its hash is kept)."""
    return {"invite_id": invite.invite_id, "created_by": invite.created_by,
            "created_at": assignments.iso(invite.created_at),
            "expires_at": assignments.iso(invite.expires_at)}


@router.get("/v1/cohorts/{cohort_id}/invites", responses=errors(401, 403, 404))
async def list_invites(cohort_id: CohortId, request: Request) -> dict[str, Any]:
    """The cohort's invite links still usable (neither revoked nor expired), newest first
    (every one: a class may make at most 50, and one that had more before that limit
    lists them all): their ids, to revoke one whose code was shared too widely or lets a
    learner taken out join again. The codes themselves are not kept."""
    who = await _manager(request)
    db = spawn_state(request).ctx.db

    def read() -> list[dict[str, Any]]:
        with db.read() as sess:
            cohorts.managed_cohort(sess, who, cohort_id)
        live = cohort_invites.live_invites(db, who, [cohort_id], per_cohort=None)
        return [invite_view(i) for i in live[cohort_id]]

    return {"cohort_id": cohort_id, "invites": await run_in_threadpool(read)}


@router.delete("/v1/cohorts/{cohort_id}/invites/{invite_id}",
               responses=errors(401, 403, 404))
async def revoke_invite(cohort_id: CohortId, invite_id: Annotated[str, Field(max_length=32)],
                        request: Request) -> dict[str, Any]:
    """Revoke an invite link; learners who joined with it stay enrolled."""
    who = await _manager(request)
    db = spawn_state(request).ctx.db
    cohorts.check_public_id("invite_id", invite_id)
    await run_in_threadpool(cohort_invites.revoke_invite, db, who, cohort_id, invite_id)
    return {"invite_id": invite_id, "revoked": True}


@router.post("/v1/cohorts/{cohort_id}/instructors", responses=errors(401, 403, 404, 409))
async def add_instructor(cohort_id: CohortId, body: InstructorBody, request: Request
                         ) -> dict[str, Any]:
    """Let another person of your tenant manage this cohort too (they need the instructor
    or operator role to use it). One of its learners only with `"confirm": true`."""
    who = await _manager(request)
    db = spawn_state(request).ctx.db
    await run_in_threadpool(staff.add_instructor, db, who, cohort_id, body.subject,
                            body.confirm)
    answer: dict[str, Any] = {"cohort_id": cohort_id, "instructor": body.subject}
    role = await run_in_threadpool(role_of, db, who.tenant_id, body.subject)
    if role == LEARNER:  # a typo, or someone who never signed in as staff (probe AT)
        answer["warning"] = (f"{body.subject} has no instructor role in this organisation "
                             "yet: they manage this cohort once their identity provider "
                             "or LMS says they teach, or an operator runs `forge roles set`")
    return answer


@router.delete("/v1/cohorts/{cohort_id}/instructors/{subject}",
               responses=errors(401, 403, 404, 409))
async def remove_instructor(cohort_id: CohortId, subject: Subject, request: Request
                            ) -> dict[str, Any]:
    """Stop someone managing this cohort (a past teaching assistant); 409 for its last
    instructor. Operators manage every cohort of the tenant regardless."""
    who = await _manager(request)
    check_subject(subject)
    await run_in_threadpool(staff.remove_instructor, spawn_state(request).ctx.db, who,
                            cohort_id, subject)
    return {"cohort_id": cohort_id, "instructor": subject, "removed": True}


@router.post("/v1/cohorts/{cohort_id}/enrolments", responses=errors(401, 403, 404, 409, 415),
             openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {
                 "schema": {"type": "string", "maxLength": MAX_BYTES}}}}})
async def enrol_csv(cohort_id: CohortId, request: Request) -> dict[str, Any]:
    """Enrol the learners of a CSV body (`text/csv`, one account id per line, an optional
    `subject` header; at most 2000 lines and 256 KiB); `enrolled` counts those newly
    enrolled, `already_enrolled` those of the file who were in the cohort already, and
    the cohort's own instructors are never enrolled (`not_enrolled`, an LMS export lists
    them). A bad line is named (422 `csv_invalid`) and nobody is enrolled; so is a file
    whose learners not enrolled yet would take the cohort past its 2000 learners (409
    `cohort_full`)."""
    who = await _manager(request)
    kind = media_type(request.headers.get("content-type"))
    if kind != "text/csv":
        raise ForgeError("unsupported_media_type", 415, "Content-Type: send the roster as "
                         f"text/csv, not {kind[:60] or 'no type'}",
                         [{"field": "content-type"}])
    db = spawn_state(request).ctx.db
    data = await request.body()

    def enrol() -> cohorts.Enrolled:
        with db.read() as sess:
            cohorts.managed_cohort(sess, who, cohort_id)  # scope first: no parsing oracle
        return cohorts.enrol_subjects(db, who, cohort_id, parse_roster(data), via="csv")

    done = await run_in_threadpool(enrol)
    return {"cohort_id": cohort_id, "enrolled": done.added,
            "already_enrolled": done.already,
            "not_enrolled": [{"subject": s, "reason": "instructor of this cohort"}
                             for s in done.instructors]}


@router.delete("/v1/cohorts/{cohort_id}/learners/{subject}", responses=errors(401, 403, 404))
async def unenrol_learner(cohort_id: CohortId, subject: Subject, request: Request
                          ) -> dict[str, Any]:
    """Take a learner out of the cohort. Its assignments leave their list and the
    dashboard, and they can start none of them any more (a lab running goes on to its
    end); their labs and results are kept. `was_via` says how they had come in: one of
    the cohort's identity-provider group (`group`) is enrolled again at their next
    sign-in while still in the group; an invite link still valid lets one join again
    (revoke it)."""
    who = await _manager(request)
    check_subject(subject)
    via = await run_in_threadpool(class_changes.unenrol, spawn_state(request).ctx.db, who,
                                  cohort_id, subject)
    return {"cohort_id": cohort_id, "subject": subject, "unenrolled": True, "was_via": via}


@router.post("/v1/cohorts/join", responses=errors(401, 403, 404, 409))
async def join(body: JoinBody, request: Request) -> JSONResponse:
    """Join a cohort of your tenant with an invite link's code (404 `invite_invalid` for an
    unknown, expired or revoked link, or another tenant's; 409 `cohort_full` when the
    cohort holds its 2000 learners already, `cohort_case_clash` when it has you in other letter
    case)."""
    who = await _manager(request)
    row = await run_in_threadpool(cohort_invites.join_by_invite, spawn_state(request).ctx.db,
                                  who.tenant_id, who.subject, body.invite)
    return JSONResponse({"cohort_id": row.cohort_id, "name": row.name})


