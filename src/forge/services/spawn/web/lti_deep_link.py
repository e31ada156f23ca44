"""LTI deep linking and roster sync (issue 18 item 4).

After a deep linking launch the instructor picks a lab and its window on `/lti/deep-link`;
the POST (same-origin, CSRF, the verified request in a signed cookie of this browser, made
for this very person) creates the assignment in the course's cohort and answers with a page
that posts our signed LtiDeepLinkingResponse back to the platform's return URL (the only
form of this site allowed to leave it). `POST /v1/cohorts/{id}/lti-roster` reads the
course's roster from the platform (Names and Role Provisioning) into the cohort.
"""

from __future__ import annotations

import logging
import unicodedata
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from forge.classroom import assignments, lti_grade_outbox, lti_links
from forge.classroom.cohorts import Manager, managed_cohort
from forge.errors import ForgeError
from forge.identity.lti import deep_link_response, map_subject, teaches_course
from forge.identity.lti_config import Platform
from forge.identity.lti_services import LtiCallFailed, PlatformClient
from forge.identity.roles import INSTRUCTOR, LEARNER, OPERATOR, raise_roles_in, role_of
from forge.services.common.openapi import errors
from forge.services.spawn.caller_deps import current_caller, spawn_state
from forge.services.spawn.cohort_routes import CohortId
from forge.services.spawn.web.errors import page_for
from forge.services.spawn.web.lti_pages import DL_COOKIE, lti_web, refusal
from forge.services.spawn.web.render import page
from forge.services.spawn.web.roster_sync import one_sync
from forge.services.spawn.web.security import (
    check_csrf,
    check_same_origin,
    clear_cookie,
    csrf_token,
    read_form,
    session_value,
)
from forge.services.spawn.web.state import web_state
from forge.services.spawn.web.teach import form_attempts, form_time
from forge.services.spawn.web.viewer import signed_in, viewer
from forge.store.db import Database
from forge.tokens import LTI_DEEP_LINK, TokenError, verify_token

log = logging.getLogger("forge.spawn.web.lti")
router = APIRouter()


async def _request(request: Request) -> tuple[Manager, dict[str, Any]] | None:
    """The signed-in instructor and the deep linking request made for them, else None."""
    caller = await signed_in(request)
    raw = request.cookies.get(DL_COOKIE, "")
    if caller is None or caller.scenario_scope is not None or not raw:
        return None
    try:
        claims = verify_token(spawn_state(request).settings.sat, LTI_DEEP_LINK, raw)
    except TokenError:
        return None
    if claims["sub"] != caller.subject:
        return None
    return Manager(caller.tenant_id, caller.subject, INSTRUCTOR), claims


@router.get("/lti/deep-link", include_in_schema=False)
async def pick_page(request: Request) -> Response:
    """The instructor picks the lab their course's new activity opens."""
    found = await _request(request)
    if found is None:
        return refusal(request, 403, "Add Forge labs from your course's activity chooser.")
    state = spawn_state(request)
    return page("lti_pick.html", {
        "title": "Add a Forge lab", "viewer": await viewer(request),
        "labs": sorted(state.templates), "now": assignments.iso(datetime.now(UTC))[:16],
        "csrf": csrf_token(state.settings, session_value(request) or "")})


@router.post("/lti/deep-link", include_in_schema=False)
async def pick(request: Request) -> Response:
    """Create the assignment and return it to the platform as a signed deep link."""
    found = await _request(request)
    web = lti_web(request)
    if found is None or web is None:
        return refusal(request, 403, "Add Forge labs from your course's activity chooser.")
    who, claims = found
    state = spawn_state(request)
    platform = web.registry.platforms.get(str(claims["platform"]))
    raw_settings = claims.get("settings")
    settings: dict[str, Any] = raw_settings if isinstance(raw_settings, dict) else {}
    return_url = str(settings.get("deep_link_return_url", ""))
    if platform is None or not platform.allowed(return_url):
        return refusal(request, 403, "Your course gave no usable address to return to.")
    try:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(state.settings, session_value(request), form.get("csrf"))
        attempts = form_attempts(form)
        opens = form_time("opens_at", form.get("opens_at", ""))
        closes = form_time("closes_at", form.get("closes_at", ""))
        row = await run_in_threadpool(lambda: assignments.create_assignment(
            state.ctx.db, who, str(claims["cohort_id"]), template_id=form.get("template_id", ""),
            opens_at=opens, closes_at=closes, attempts_allowed=attempts,
            hints_allowed=form.get("hints_allowed") == "yes",
            known_templates=state.templates.keys()))
    except ForgeError as exc:
        return await page_for(request, exc, "/lti/deep-link")
    jwt = deep_link_response(web.registry, platform, str(claims["deployment_id"]), settings,
                             row.assignment_id, f"Forge lab: {row.template_id}")
    target = urlsplit(return_url)
    response = page("lti_return.html", {"title": "Returning to your course", "viewer": None,
                                        "action": return_url, "jwt": jwt})
    response.headers["Content-Security-Policy"] = response.headers[
        "Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {target.scheme}://{target.netloc}")
    clear_cookie(response, request, DL_COOKIE)
    log.info("lti deep link: platform=%s assignment=%s", platform.name, row.assignment_id)
    return response


class CourseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    platform: str = Field(min_length=1, max_length=64,
                          description="The platform's name in the LTI file.")
    context_id: str = Field(min_length=1, max_length=255,
                            description="The LMS course id (the launch's context id).")

    @field_validator("platform", "context_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        """No control character or lone surrogate: a NUL was a 500 on PostgreSQL, whose
        text cannot hold one (422 naming the field instead)."""
        if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
            raise ValueError("must not hold control characters")
        return value


async def _managed(request: Request, cohort_id: str) -> Manager:
    caller = await current_caller(request)
    db = spawn_state(request).ctx.db
    role = await run_in_threadpool(role_of, db, caller.tenant_id, caller.subject)
    who = Manager(caller.tenant_id, caller.subject,
                  role if caller.scenario_scope is None else LEARNER)

    def scope() -> None:
        with db.read() as sess:
            managed_cohort(sess, who, cohort_id)

    await run_in_threadpool(scope)
    return who


@router.post("/v1/cohorts/{cohort_id}/lti-course", tags=["classroom"],
             responses=errors(401, 403, 404, 409))
async def link_course(cohort_id: CohortId, body: CourseBody, request: Request) -> dict[str, Any]:
    """Link an LMS course to this cohort (operators of the tenant only: a course id is
    guessable, so an instructor could otherwise capture a real course before its first
    launch): launches from that course then enrol into this cohort and open its
    assignments. The platform must be registered for your tenant; a course already linked
    to another cohort is 409."""
    who = await _managed(request, cohort_id)
    if who.role != OPERATOR:  # first: an instructor learns nothing of the registered LMSs
        raise ForgeError("operator_required", 403, "only an operator of this tenant may link "
                         "an LMS course to a cohort")
    web = lti_web(request)
    platform = web.registry.platforms.get(body.platform) if web else None
    if platform is None or platform.tenant_id != who.tenant_id:
        raise ForgeError("lti_platform_unknown", 404, "platform: no such LMS registered for "
                         "your organisation", [{"field": "platform"}])
    await run_in_threadpool(lti_links.link_course, spawn_state(request).ctx.db, platform.name,
                            body.context_id, who.tenant_id, cohort_id)
    return {"cohort_id": cohort_id, "platform": platform.name, "context_id": body.context_id}


def _people(platform: Platform, members: list[dict[str, Any]]
            ) -> list[tuple[str, bool, str]]:
    """The active members as (Forge subject, teaches the course, LMS user id)."""
    out: list[tuple[str, bool, str]] = []
    for m in members:  # at most MAX_ROSTER_MEMBERS (the client's bound)
        user, roles = m.get("user_id"), m.get("roles")
        if not isinstance(user, str) or not 0 < len(user) <= 255:
            continue
        if m.get("status", "Active") != "Active":
            continue
        out.append((map_subject(platform, user), teaches_course(roles), user))
    return out


@router.post("/v1/cohorts/{cohort_id}/lti-roster", tags=["classroom"],
             responses=errors(401, 403, 404, 409, 502))
async def sync_roster(cohort_id: CohortId, request: Request) -> dict[str, Any]:
    """Read the roster of the LMS course this cohort came from (Names and Role
    Provisioning) into the cohort: learners enrolled, teachers added as instructors. A
    roster whose learners not enrolled yet would take the cohort past its 2000 learners is
    refused whole (409 `cohort_full`: nobody added, no role raised). `not_in_course` lists
    the learners who came in from the course and are no longer active members of it: they
    stay enrolled (and counted) until an instructor takes them out."""
    who = await _managed(request, cohort_id)
    db = spawn_state(request).ctx.db
    course = await run_in_threadpool(lti_links.course_by_cohort, db, cohort_id)
    web = lti_web(request)
    platform = web.registry.platforms.get(course.platform) if course and web else None
    if platform is not None and course is not None and not (
            course.tenant_id == platform.tenant_id == who.tenant_id):
        platform = None  # the course or its platform is another tenant's: never cross
    if course is None or platform is None or not course.memberships_url:
        raise ForgeError("lti_roster_unavailable", 409, "cohort_id: this cohort has no LMS "
                         "roster to read (not from an LMS course, or the course offers none)",
                         [{"field": "cohort_id"}])
    assert web is not None
    with one_sync(cohort_id) as sync:
        client = PlatformClient(web.registry, web_state(request).backend.http.client)
        try:
            members = await client.members(platform, course.memberships_url)
        except LtiCallFailed as exc:
            log.warning("lti roster of %s failed: %s", cohort_id, exc)
            detail = (f"the LMS roster cannot be used: {exc}" if exc.final
                      else f"the LMS did not give the roster ({exc}); try again later")
            raise ForgeError("lti_platform_failed", 502, detail) from None
        people = _people(platform, members)
        added = await sync.store(lambda: store_roster(
            db, cohort_id, platform.tenant_id, [(s, t) for s, t, _ in people],
            platform.name, [(s, u) for s, _, u in people]))
    # Grades owed to learners the LMS did not know of yet (started from Forge) go now.
    await run_in_threadpool(lti_grade_outbox.settle_owed, db, cohort_id)
    left = await run_in_threadpool(lti_links.not_in_roster, db, cohort_id,
                                   [s for s, _, _ in people])
    return {"cohort_id": cohort_id, "members": len(people), "added": added,
            "not_in_course": left}


def store_roster(db: Database, cohort_id: str, tenant_id: str,
                 people: list[tuple[str, bool]], platform: str | None = None,
                 users: list[tuple[str, str]] | None = None) -> int:
    """Raise each person's tenant role and seat them in the cohort, in one transaction of
    a few bulk statements (chunks of 500): a failure midway leaves no one half-added, and
    10,000 people hold the store's write lock briefly, not for one round trip each. The
    number newly added to the cohort. ForgeError 409 `lti_roster_not_stored` if it keeps
    conflicting (the cohort deleted meanwhile, people signing in at the same moment), 409
    `cohort_full` (nothing stored) past `cohorts.MAX_MEMBERS` learners. `users` (subject,
    LMS user id) of `platform` are kept too: where the grades of those who never launched
    go (`lti_links.remember_users`)."""
    wanted: dict[str, str] = {}
    for subject, teaches in people:
        if teaches or subject not in wanted:
            wanted[subject] = INSTRUCTOR if teaches else LEARNER
    for _ in range(2):
        try:
            with db.session() as sess:
                raise_roles_in(sess, tenant_id, wanted)
                if platform is not None and users:
                    lti_links.remember_users(sess, platform, users)
                return lti_links.enrol_roster_in(sess, cohort_id, tenant_id, people)
        except IntegrityError:
            continue  # a person inserted meanwhile by their own sign-in: compare with it
    raise ForgeError("lti_roster_not_stored", 409, "cohort_id: the roster could not be "
                     "recorded (the cohort was deleted, or its people changed meanwhile); "
                     "nothing of it was stored, try again", [{"field": "cohort_id"}])
