"""Forge as an LTI 1.3 tool, as pages (issue 18 item 4).

`/lti/login` is the platform's OIDC login initiation: state and nonce go into a signed,
HttpOnly cookie of this browser (one per login, SameSite=None on https: the launch is a
cross-site form post) bound to this browser (`lti_login_state`), and the browser goes to
the platform. `/lti/launch` takes the posted id_token only in that browser, verifies it
(`forge.identity.lti`), consumes its nonce once (refused on every replica afterwards), maps
the course to a cohort and the person to a subject of the platform's tenant, and signs them
in: a learner lands on the assignment the activity names, ready to start it; an instructor
lands on /teach, or for deep linking on the page where they pick a lab (`lti_deep_link`).
`/lti/jwks` publishes our public key.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.classroom import cohorts, lti_grade_outbox, lti_links
from forge.classroom.assignments import iso, my_assignment
from forge.classroom.cohorts import new_id
from forge.classroom.lti_links import CourseSeat
from forge.config.settings import ConfigError, Settings
from forge.errors import ForgeError
from forge.identity.caller import SESSION_COOKIE
from forge.identity.lti import (
    ASSIGNMENT_PARAM,
    DEEP_LINKING,
    KeyCache,
    Launch,
    LtiRefused,
    begin_login,
    verify_launch,
)
from forge.identity.lti_config import LtiConfigError, LtiRegistry, load_lti
from forge.identity.roles import INSTRUCTOR, LEARNER, raise_role
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.site_links import set_public_url
from forge.services.spawn.web.errors import PageError, error_response
from forge.services.spawn.web.lti_login_state import forget_login, keep_login, login_of
from forge.services.spawn.web.render import page
from forge.services.spawn.web.security import (
    LEARNER_SESSION_TTL_S,
    OPS_COOKIE,
    RECEIPT_COOKIE,
    clear_cookie,
    csrf_token,
    is_https,
    learner_session,
    parse_form,
    session_value,
    set_cookie,
)
from forge.services.spawn.web.signout import end_another_persons
from forge.services.spawn.web.viewer import signed_in, viewer
from forge.tokens import LTI_DEEP_LINK, TokenReplayed, mint_token
from forge.tokens.replay import consume_once

log = logging.getLogger("forge.spawn.web.lti")
router = APIRouter(include_in_schema=False)
DL_COOKIE = "forge_lti_dl"
NONCE_KIND = "LTIN"
MAX_FIELD = 64 * 1024
MAX_DL_COOKIE = 3800  # browsers keep cookies of up to about 4 KiB


@dataclass
class LtiWeb:
    """The registered platforms, our key, and the platforms' cached key sets."""

    registry: LtiRegistry
    keys: KeyCache = field(default_factory=KeyCache)


def install(app: FastAPI, settings: Settings) -> None:
    """Load the LTI file when one is configured (an invalid one stops the service at start)
    and add the routes; without one every /lti/ page says no platform is registered."""
    registry = None
    if settings.lti_file is not None:
        try:
            registry = load_lti(settings.lti_file)
        except LtiConfigError as exc:
            raise ConfigError(settings.env.value, [str(exc)]) from None
    app.state.forge_lti = LtiWeb(registry) if registry is not None else None
    set_public_url(app, registry.base_url if registry is not None else None)
    app.include_router(router)


def lti_web(request: Request) -> LtiWeb | None:
    """The app's LTI state (None: no LTI file)."""
    found: LtiWeb | None = request.app.state.forge_lti
    return found


def refusal(request: Request, status: int, message: str) -> Response:
    """A plain page for a refused launch: no session is set."""
    return error_response(request, PageError(status, "Not opened", message, "/signin",
                                             "/signin"))


async def _params(request: Request) -> dict[str, str]:
    """The query and, for a POST, the form's text fields. A name given twice (in the form,
    or in both the query and the form) is refused: the last value was taken, so which
    `id_token` or `state` counted was the parser's choice, not the platform's, where the
    query string and every other form of the site refuse a repeat."""
    params = dict(request.query_params)
    if request.method == "POST":
        form = await parse_form(request)
        given = set(params)
        for key, value in form.multi_items():
            if key in given:
                raise LtiRefused("invalid_form", 400, "Your course sent the same detail "
                                 "twice, so nothing was opened. Open the activity again "
                                 "from your course.", f"{key[:40]!r}: given more than once")
            given.add(key)
            if isinstance(value, str):
                params[key] = value
    return {k: v for k, v in params.items() if len(v) <= MAX_FIELD}


@router.get("/lti/jwks")
async def jwks(request: Request) -> Response:
    """Our public key set: platforms verify deep linking responses and client assertions."""
    web = lti_web(request)
    if web is None:
        return JSONResponse({"keys": []})
    return JSONResponse(web.registry.jwks(), headers={"Cache-Control": "max-age=300"})


@router.api_route("/lti/login", methods=["GET", "POST"])
async def login(request: Request) -> Response:
    """OIDC login initiation from a platform: on to its authorization endpoint."""
    web = lti_web(request)
    if web is None:
        return refusal(request, 404, "No learning platform is registered with this site.")
    try:
        pending, url = begin_login(web.registry, await _params(request))
    except LtiRefused as exc:
        log.warning("lti login refused: %s", exc.reason)
        return refusal(request, exc.status, exc.message)
    response = RedirectResponse(url, status_code=302)
    keep_login(request, response, spawn_state(request).settings.sat, pending)
    return response


def _nonce_id(platform: str, nonce: str) -> str:
    return hashlib.sha256(f"lti-nonce\x00{platform}\x00{nonce}".encode()).hexdigest()


async def _signed_in(request: Request, launch: Launch, next_path: str) -> Response:
    """The learner session of the launched person and a page moving on to `next_path` from
    this site (a same-site step, so the SameSite=Strict session cookie rides along); a
    session of another person this launch reached (a same-site course site) is ended."""
    settings = spawn_state(request).settings
    await end_another_persons(request, launch.platform.tenant_id, launch.subject)
    response = page("oidc_done.html", {"title": "Signed in", "viewer": None,
                                       "next": next_path})
    set_cookie(response, request, SESSION_COOKIE,
               learner_session(settings, launch.platform.tenant_id, launch.subject),
               LEARNER_SESSION_TTL_S)
    clear_cookie(response, request, RECEIPT_COOKIE)
    clear_cookie(response, request, OPS_COOKIE)
    return response


def _record(request: Request, launch: Launch) -> tuple[str, Any, bool]:
    """Course → cohort, person → role and seat; the assignment a resource link names; and
    whether they teach the class (an instructor of its cohort launching as a student, their
    student view, is not seated as a learner: they go to /teach, with no grade link)."""
    db = spawn_state(request).ctx.db
    seated = lti_links.course_cohort(db, CourseSeat(
        launch.platform.name, launch.platform.tenant_id, launch.context_id,
        launch.context_title, launch.subject, launch.teaches, launch.memberships_url))
    raise_role(db, launch.platform.tenant_id, launch.subject,
               INSTRUCTOR if launch.teaches else LEARNER)
    lti_links.remember_user(db, launch.platform.name, launch.subject, launch.lti_user)
    found = lti_links.course_assignment(db, seated.cohort_id,
                                        launch.custom.get(ASSIGNMENT_PARAM))
    if found is not None and launch.lineitem and not seated.teaches:
        lti_links.link_grade(db, found.assignment_id, launch.subject, launch.platform.name,
                             launch.lti_user, launch.lineitem)
    # Grades owed before where they go was known (a lab started from Forge by a learner
    # who never launched, or before any launch of the activity) go now.
    try:  # best effort: the scoreboard's poster settles them within a minute anyway
        lti_grade_outbox.settle_owed(db, seated.cohort_id)
    except Exception:  # the learner's launch must not fail on it
        log.exception("settling the waiting grades of cohort %s failed", seated.cohort_id)
    return seated.cohort_id, found, seated.teaches


@router.post("/lti/launch")
async def launch(request: Request) -> Response:
    """A platform's launch (form post of id_token and state): verify, then sign in."""
    web = lti_web(request)
    if web is None:
        return refusal(request, 404, "No learning platform is registered with this site.")
    try:
        form = await _params(request)
    except LtiRefused as exc:
        log.warning("lti launch refused: %s", exc.reason)
        return refusal(request, exc.status, exc.message)
    pending = login_of(request, spawn_state(request).settings.sat, form.get("state", ""))
    if pending is None:
        log.warning("lti launch refused: no login with this state in this browser")
        return refusal(request, 403, "This launch was started in another browser or took too "
                       "long. Open the activity again from your course.")
    state = spawn_state(request)
    try:
        verified = await run_in_threadpool(verify_launch, web.registry, web.keys, pending,
                                           form, is_https(request))
        if not verified.context_id:
            raise LtiRefused("lti_no_course", 400, "Forge opens only from inside a course.",
                             "launch without a context")
        await run_in_threadpool(consume_once, state.replay,
                                _nonce_id(verified.platform.name, verified.nonce), NONCE_KIND,
                                datetime.fromtimestamp(verified.expires_at + 600, UTC))
    except LtiRefused as exc:
        log.warning("lti launch refused: %s", exc.reason)
        return refusal(request, exc.status, exc.message)
    except TokenReplayed:
        log.warning("lti launch refused: nonce already used")
        return refusal(request, 409, "This launch was already used. Open the activity again "
                       "from your course.")
    if verified.message_type == DEEP_LINKING and not verified.teaches:
        return refusal(request, 403, "Only the course's instructors can add Forge labs.")
    if verified.message_type == DEEP_LINKING and len(
            _dl_token(request, verified, new_id("coh"))) > MAX_DL_COOKIE:
        # a browser drops a larger cookie: say so now, before anything is recorded
        return refusal(request, 400, "Your course sent more than Forge can keep while "
                       "you choose a lab. Tell your administrator.")
    try:
        cohort_id, found, teaches = await run_in_threadpool(_record, request, verified)
    except ForgeError as exc:
        log.warning("lti launch refused: %s", exc.code)
        if exc.code == "cohort_full":
            return refusal(request, exc.status, "This course's class in Forge is full: it "
                           f"holds at most {cohorts.MAX_MEMBERS} learners. Tell your "
                           "instructor.")
        return refusal(request, exc.status, "This course belongs to another organisation in "
                       "Forge. Tell your administrator.")
    log.info("lti launch: platform=%s type=%s teaches=%s", verified.platform.name,
             verified.message_type, verified.teaches)
    response = await _landing(request, verified, cohort_id, found, teaches)
    forget_login(request, response, pending.state)
    return response


def _dl_token(request: Request, verified: Launch, cohort_id: str) -> str:
    """The signed deep linking request kept in this browser while the instructor picks."""
    return mint_token(spawn_state(request).settings.sat, LTI_DEEP_LINK, {
        "platform": verified.platform.name, "sub": verified.subject,
        "deployment_id": verified.deployment_id, "cohort_id": cohort_id,
        "settings": dict(verified.deep_link or {})})


async def _landing(request: Request, verified: Launch, cohort_id: str, found: Any,
                   teaches: bool) -> Response:
    """Where a verified launch goes: deep linking's pick page, /teach (one who teaches the
    class), or the assignment."""
    if verified.message_type == DEEP_LINKING:
        response = await _signed_in(request, verified, "/lti/deep-link")
        dl = _dl_token(request, verified, cohort_id)
        set_cookie(response, request, DL_COOKIE, dl, LTI_DEEP_LINK.ttl_s)
        return response
    if teaches:
        return await _signed_in(request, verified, "/teach")
    if found is None:
        return refusal(request, 404, "This activity is not set up in Forge yet. Tell your "
                       "instructor.")
    return await _signed_in(request, verified, f"/lti/assignment/{found.assignment_id}")


def _track_of(request: Request, template_id: str) -> str | None:
    labs = spawn_state(request).track_labs
    return next((t for t, names in labs.items() if template_id in names), None)


@router.get("/lti/assignment/{assignment_id}")
async def assignment_page(assignment_id: str, request: Request) -> Response:
    """Where a launched learner lands: the assignment, its window and a Start button."""
    caller = await signed_in(request)
    if caller is None or caller.scenario_scope is not None:
        return refusal(request, 401, "Open the activity again from your course.")
    state = spawn_state(request)
    found = await run_in_threadpool(my_assignment, state.ctx.db, caller.tenant_id,
                                    caller.subject, assignment_id)
    if found is None:
        return refusal(request, 404, "This assignment is not one of yours.")
    lab_title = state.lab_title(found["template_id"], found["template_id"])
    return page("lti_assignment.html", {
        "title": f"Assignment: {lab_title}", "viewer": await viewer(request),
        "a": found, "lab_title": lab_title, "track": _track_of(request, found["template_id"]),
        "now": iso(datetime.now(UTC)),
        "csrf": csrf_token(state.settings, session_value(request) or ""),
        "request_id": "lti-" + hashlib.sha256(
            f"{assignment_id}{caller.subject}{datetime.now(UTC).timestamp()}".encode()
        ).hexdigest()[:24]})

