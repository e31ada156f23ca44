"""The instructor's page, `/teach`: their cohorts, and forms to create one, make an invite
link, enrol a roster (pasted, one account id per line) and assign a lab with its window.
The rules are `forge.classroom`'s, as for the API; learners are refused (403)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.classroom import assignments, attempt_grants, class_changes, cohort_invites, cohorts
from forge.classroom.cohorts import Manager
from forge.classroom.roster_csv import MAX_BYTES as ROSTER_MAX_BYTES
from forge.classroom.roster_csv import MAX_ROWS as ROSTER_MAX_ROWS
from forge.classroom.roster_csv import parse_roster
from forge.classroom.scope import check_subject
from forge.errors import ForgeError, invalid_field
from forge.identity.roles import LEARNER
from forge.services.spawn.caller_deps import manager_of, spawn_state
from forge.services.spawn.site_links import page_link
from forge.services.spawn.state import no_plan_warning
from forge.services.spawn.web.errors import human_message, page_for, signin_url
from forge.services.spawn.web.render import page
from forge.services.spawn.web.security import (
    check_csrf,
    check_same_origin,
    csrf_token,
    read_form,
    session_value,
)
from forge.services.spawn.web.teach_notice import (
    back_to_teach,
    forget_notice,
    page_after,
    take_notice,
    teach_page_of,
)
from forge.services.spawn.web.teach_refused import Refused, refused_form
from forge.services.spawn.web.viewer import signed_in, viewer
from forge.store.models import Assignment

router = APIRouter(include_in_schema=False)


async def _manager(request: Request) -> Manager | None:
    """The signed-in person (not a lab's access link) with their role; None: sign in."""
    caller = await signed_in(request)
    if caller is None or caller.scenario_scope is not None:
        return None
    return await manager_of(request, caller)


TEACH_PAGE = 20  # classes shown per page


def _overview(request: Request, who: Manager,
              after: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the classes `who` manages, newest first (`after`: those before it), each
    with its learner count and assignments; and the next page's `after` (None on the
    last)."""
    db = spawn_state(request).ctx.db
    rows = cohorts.cohorts_of(db, who, limit=TEACH_PAGE + 1, after=after)
    shown = rows[:TEACH_PAGE]
    counts = cohorts.learner_counts(db, who, [c.cohort_id for c in shown])
    staff = cohorts.instructors_of(db, who, [c.cohort_id for c in shown])
    # One more than shown: a class with links from before the cap says that it has more.
    cap = cohort_invites.MAX_LISTED_INVITES
    invites = cohort_invites.live_invites(db, who, [c.cohort_id for c in shown],
                                          per_cohort=cap + 1)
    assigned = assignments.assignments_of_cohorts(db, who, [c.cohort_id for c in shown])
    return [{"cohort": c, "learners": counts.get(c.cohort_id, 0),
             "instructors": staff.get(c.cohort_id, []),
             "invites": [{"invite_id": i.invite_id, "created_by": i.created_by,
                          "expires_at": assignments.iso(i.expires_at)}
                         for i in invites.get(c.cohort_id, [])[:cap]],
             "more_invites": len(invites.get(c.cohort_id, [])) > cap,
             "assignments": [assignments.view(a) for a in assigned.get(c.cohort_id, [])]}
            for c in shown], shown[-1].cohort_id if len(rows) > TEACH_PAGE else None


async def _render(request: Request, who: Manager, invite: dict[str, str] | None = None,
                  notice: str | None = None, refused: Refused | None = None,
                  after: str | None = None) -> Response:
    """The page of classes after ``after`` (None: the query's), with a form's ``notice``
    or new ``invite``, or the ``refused`` form filled in again (status 422)."""
    if who.role == LEARNER:
        raise ForgeError("instructor_required", 403,
                         "This page is for instructors; ask your organisation for access.")
    state = spawn_state(request)
    after = after if after is not None else request.query_params.get("after") or None
    classes, older = await run_in_threadpool(_overview, request, who, after)
    return page("teach.html", {
        "title": "Your classes", "viewer": await viewer(request),
        "classes": classes, "older": older, "invite": invite, "notice": notice,
        "refused": refused, "after": after or "",
        "labs": sorted(state.templates), "now": assignments.iso(datetime.now(UTC))[:16],
        "csrf": csrf_token(state.settings, session_value(request) or ""),
        "roster_rows": f"{ROSTER_MAX_ROWS:,}",
    })


@router.get("/teach")
async def teach_page(request: Request) -> Response:
    """The instructor's classes and their forms."""
    who = await _manager(request)
    if who is None:
        return RedirectResponse(signin_url("/teach"), status_code=303)
    try:
        notice, invite = take_notice(request, spawn_state(request).settings, who)
        assigned = request.query_params.get("assigned")
        if assigned is not None:
            notice = await run_in_threadpool(_assigned_notice, request, who, assigned)
        response = await _render(request, who, invite, notice)
        forget_notice(request, response)
        return response
    except ForgeError as exc:
        return await page_for(request, exc, "/tracks")


def form_time(field: str, value: str) -> datetime:
    """A form's date and time (`2026-12-01T09:00`, read as UTC unless it names a zone)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_field(field, "a date and time such as 2026-12-01T09:00 (UTC)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # range: create_assignment


def form_attempts(form: dict[str, str]) -> int:
    """A form's `attempts_allowed` (default 1): digits only, 422 naming it otherwise."""
    attempts = form.get("attempts_allowed", "1")
    # ASCII digits only ("٣" is a digit to Python), at most 9: the range is
    # create_assignment's.
    if not (attempts.isascii() and attempts.isdigit() and len(attempts) <= 9):
        raise invalid_field("attempts_allowed", "a whole number")
    return int(attempts)


async def _post(request: Request,
                act: Callable[[Manager, dict[str, str]], Awaitable[Response | None]],
                long: Mapping[str, int] | None = None) -> Response:
    """Run a form's action for a signed-in manager, then back to /teach (errors as pages);
    ``long``: fields allowed past the usual size (``read_form``)."""
    who = await _manager(request)
    if who is None:
        return RedirectResponse(signin_url("/teach"), status_code=303)
    form: dict[str, str] | None = None
    try:
        check_same_origin(request)
        form = await read_form(request, long)
        check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
        shown = await act(who, form)
    except ForgeError as exc:
        # A 422, or a learner the class does not have (a typo in the account id): the form
        # comes back filled in with why, not an error page that loses it.
        on_form = exc.status == 422 or exc.code == "learner_not_found"
        refused = None if form is None or not on_form else refused_form(
            request.url.path, form, human_message(exc), exc.details)
        if form is None or refused is None:
            return await page_for(request, exc, "/teach")
        try:
            response = await _render(request, who, refused=refused, after=page_after(form))
        except ForgeError:  # the page itself cannot be shown (its `after`): the error page
            return await page_for(request, exc, "/teach")
        response.status_code = exc.status
        return response
    return shown or RedirectResponse("/teach", status_code=303)


@router.post("/teach/cohorts")
async def new_cohort(request: Request) -> Response:
    """Create a class."""
    async def act(who: Manager, form: dict[str, str]) -> None:
        await run_in_threadpool(cohorts.create_cohort, spawn_state(request).ctx.db, who,
                                form.get("name", ""), form.get("idp_group") or None)
    return await _post(request, act)


@router.post("/teach/cohorts/{cohort_id}/invite")
async def new_invite(cohort_id: str, request: Request) -> Response:
    """Make an invite link and show it once."""
    async def act(who: Manager, form: dict[str, str]) -> Response:
        _, token = await run_in_threadpool(cohort_invites.make_invite, spawn_state(request).ctx.db,
                                           who, cohort_id, 14)
        url = page_link(request, f"/join/{token}")
        return back_to_teach(request, spawn_state(request).settings, who,
                             teach_page_of(form), invite={"cohort_id": cohort_id, "url": url})
    return await _post(request, act)


@router.post("/teach/cohorts/{cohort_id}/invites/{invite_id}/revoke")
async def revoke_invite(cohort_id: str, invite_id: str, request: Request) -> Response:
    """Revoke an invite link: nobody joins with it any more (those who joined stay)."""
    async def act(who: Manager, form: dict[str, str]) -> Response:
        cohorts.check_public_id("invite_id", invite_id)
        await run_in_threadpool(cohort_invites.revoke_invite, spawn_state(request).ctx.db, who,
                                cohort_id, invite_id)
        return back_to_teach(request, spawn_state(request).settings, who, teach_page_of(form),
                             f"Invite link {invite_id} revoked: nobody can join with it any "
                             "more (those who joined stay).")
    return await _post(request, act)


@router.post("/teach/cohorts/{cohort_id}/roster")
async def roster(cohort_id: str, request: Request) -> Response:
    """Enrol a pasted roster: all of it, or nobody when a line is wrong."""
    async def act(who: Manager, form: dict[str, str]) -> Response:
        db = spawn_state(request).ctx.db

        data = form.get("roster", "").encode()
        if len(data) > ROSTER_MAX_BYTES:  # said on the form, the pasted text kept in it
            raise ForgeError("csv_too_large", 422,
                             f"roster: the pasted roster is {len(data) // 1024} KiB, more "
                             f"than {ROSTER_MAX_BYTES // 1024} KiB (about 2,000 learners); "
                             "paste it in parts", [{"field": "roster",
                                                    "limit_bytes": ROSTER_MAX_BYTES}])

        def enrol() -> cohorts.Enrolled:
            with db.read() as sess:
                cohorts.managed_cohort(sess, who, cohort_id)
            return cohorts.enrol_subjects(db, who, cohort_id, parse_roster(data), via="csv")
        done = await run_in_threadpool(enrol)
        notice = f"{done.added} learner{'' if done.added == 1 else 's'} newly enrolled"
        notice += f"; {done.already} already in the class." if done.already else "."
        if done.instructors:
            shown = ", ".join(done.instructors[:5])
            more = len(done.instructors) - 5
            notice += (f" Not enrolled, as instructors of this class: {shown}"
                       + (f" and {more} more" if more > 0 else "") + ".")
        return back_to_teach(request, spawn_state(request).settings, who,
                             teach_page_of(form), notice)
    # The API takes 256 KiB (``roster_csv``: 2,000 lines; a class of 200 with e-mail
    # addresses for ids is ~7,000 characters); the field is read up to the body's limit so
    # a longer paste is refused on the form, with its text, not on a bare error page.
    return await _post(request, act, long={"roster": 4 * ROSTER_MAX_BYTES})


@router.post("/teach/cohorts/{cohort_id}/assignments")
async def assign(cohort_id: str, request: Request) -> Response:
    """Assign a lab with its window, attempts and hints."""
    async def act(who: Manager, form: dict[str, str]) -> Response:
        state = spawn_state(request)
        attempts = form_attempts(form)
        opens, closes = form_time("opens_at", form.get("opens_at", "")), form_time(
            "closes_at", form.get("closes_at", ""))
        row = await run_in_threadpool(lambda: assignments.create_assignment(
            state.ctx.db, who, cohort_id, template_id=form.get("template_id", ""),
            opens_at=opens, closes_at=closes, attempts_allowed=attempts,
            hints_allowed=form.get("hints_allowed") == "yes",
            known_templates=state.templates.keys()))
        # Back to /teach by a redirect (a reload must not assign the lab twice), which
        # names the new assignment for the plans line (``_assigned_notice``).
        page = teach_page_of(form)
        return RedirectResponse(f"{page}{'&' if '?' in page else '?'}assigned="
                                f"{row.assignment_id}", status_code=303)
    return await _post(request, act)


def _assigned_notice(request: Request, who: Manager, assignment_id: str) -> str | None:
    """The line about an assignment `who` just made (`/teach?assigned=`): which plans can
    start its lab, or a warning that none can. None for an id that is not one of theirs
    (the text comes from the store, never from the query)."""
    state = spawn_state(request)
    try:
        cohorts.check_public_id("assignment_id", assignment_id)
        with state.ctx.db.read() as sess:
            row = sess.get(Assignment, assignment_id)
            if row is None or row.tenant_id != who.tenant_id:
                return None
            cohorts.managed_cohort(sess, who, row.cohort_id)
            template_id = row.template_id
    except ForgeError:
        return None
    plans = state.plans_for(template_id)
    return (f"{template_id} assigned; learners on {', '.join(plans)} can start it."
            if plans else "Warning: " + no_plan_warning(template_id) + ".")


def _subject(form: dict[str, str]) -> str:
    """A form's learner account id, trimmed and checked as the API checks it (422 naming
    `subject`: a NUL reached PostgreSQL as a 500)."""
    return check_subject(form.get("subject", "").strip())


def _assignment_id(form: dict[str, str]) -> str:
    """A form's `assignment_id`, checked as the API checks it (422 naming it)."""
    value = form.get("assignment_id", "")
    cohorts.check_public_id("assignment_id", value)
    return value


@router.post("/teach/cohorts/{cohort_id}/changes")
async def change_assignment(cohort_id: str, request: Request) -> Response:
    """Change an assignment of a running class: its due time or its attempts (a field
    left empty stays as it was)."""
    async def act(who: Manager, form: dict[str, str]) -> Response:
        changes: dict[str, Any] = {}
        if form.get("closes_at"):
            changes["closes_at"] = form_time("closes_at", form["closes_at"])
        if form.get("attempts_allowed"):
            changes["attempts_allowed"] = form_attempts(form)
        if not changes:
            raise invalid_field("closes_at", "give a new due time or number of attempts")
        row = await run_in_threadpool(
            class_changes.update_assignment, spawn_state(request).ctx.db, who, cohort_id,
            _assignment_id(form), changes)
        shown = assignments.view(row)
        return back_to_teach(request, spawn_state(request).settings, who, teach_page_of(form), (
            f"{shown['template_id']} is now due {shown['closes_at']}, with "
            f"{shown['attempts_allowed']} attempt{'' if row.attempts_allowed == 1 else 's'}."))
    return await _post(request, act)


@router.post("/teach/cohorts/{cohort_id}/due")
async def give_time(cohort_id: str, request: Request) -> Response:
    """Give one learner more time for an assignment."""
    async def act(who: Manager, form: dict[str, str]) -> Response:
        subject = _subject(form)
        closes = form_time("closes_at", form.get("closes_at", ""))
        await run_in_threadpool(
            class_changes.set_due, spawn_state(request).ctx.db, who, cohort_id,
            _assignment_id(form), subject, closes)
        return back_to_teach(request, spawn_state(request).settings, who, teach_page_of(form), (
            f"{subject} now has until {assignments.iso(closes)} for this assignment."))
    return await _post(request, act)


@router.post("/teach/cohorts/{cohort_id}/attempts")
async def give_attempts(cohort_id: str, request: Request) -> Response:
    """Give one learner extra attempts of an assignment, with the reason."""
    async def act(who: Manager, form: dict[str, str]) -> Response:
        subject = _subject(form)
        extra = form.get("extra_attempts", "")
        if not (extra.isascii() and extra.isdigit() and len(extra) <= 9):
            raise invalid_field("extra_attempts", "a whole number from 1 to "
                                                  f"{attempt_grants.MAX_EXTRA}")
        row = await run_in_threadpool(
            attempt_grants.grant_attempts, spawn_state(request).ctx.db, who, cohort_id,
            _assignment_id(form), subject, int(extra), form.get("reason", ""))
        return back_to_teach(request, spawn_state(request).settings, who, teach_page_of(form), (
            f"{subject} now has {row.extra} extra attempt{'' if row.extra == 1 else 's'} "
            "of this assignment."))
    return await _post(request, act)


@router.post("/teach/cohorts/{cohort_id}/remove")
async def remove_learner(cohort_id: str, request: Request) -> Response:
    """Take a learner out of the class."""
    async def act(who: Manager, form: dict[str, str]) -> Response:
        subject = _subject(form)
        via = await run_in_threadpool(class_changes.unenrol, spawn_state(request).ctx.db,
                                      who, cohort_id, subject)
        notice = f"{subject} is no longer a learner of this class."
        if via == "group":
            notice += (" They came in by its sign-in group and join again at their next "
                       "sign-in while still in it.")
        elif via == "invite":
            notice += (" They came in by an invite link and can join again with it while it "
                       "is valid: revoke it under Invite links, and share a new one.")
        elif via == "lti":
            notice += (" They came in from its LMS course: a launch from the course or a "
                       "roster sync enrols them again while they are a member of it there.")
        return back_to_teach(request, spawn_state(request).settings, who,
                             teach_page_of(form), notice)
    return await _post(request, act)
