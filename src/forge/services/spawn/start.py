"""The one spawn use case: `POST /v1/spawn` and the learner page's Start button both call
`start_lab`, so they validate, identify, entitle, limit and refuse exactly alike."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from forge.classroom.cohorts import check_public_id
from forge.entitlements.resolve import Entitlement, resolve_entitlement
from forge.errors import ForgeError
from forge.identity.caller import Caller
from forge.services.common.store_reads import read_call
from forge.services.spawn.assignment_gate import Preloaded, SpawnFacts, admit, preload, settle
from forge.services.spawn.caller_deps import identify_caller, spawn_state
from forge.services.spawn.labs import check_plan, choose_lab
from forge.services.spawn.peers import keys_refused
from forge.services.spawn.site_links import api_link
from forge.services.spawn.spawning import SpawnAnswer, check_request_id, spawn
from forge.templates.dsl_limits import NAME_RE

MAX_TRACK = 32
MAX_LAB = 63


def _invalid(field: str, problem: str) -> ForgeError:
    """The API's validation error shape (422), for both routes alike."""
    return ForgeError("validation_error", 422, f"invalid request: {field}",
                      [{"field": field, "problem": problem}])


def _text(field: str, value: object, limit: int, *, required: bool,
          pattern: re.Pattern[str] | None = None) -> str | None:
    """A request field as text within `limit` characters (None when absent and optional)."""
    if value is None or (value == "" and not required):
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(field, "required: a non-empty text")
    if len(value) > limit:
        raise _invalid(field, f"at most {limit} characters")
    if pattern is not None and not pattern.match(value):
        raise _invalid(field, f"must match {pattern.pattern}")
    return value


def _request_id(from_body: str | None, header: str | None) -> str:
    """The idempotency key: the body's ``request_id``, else the ``X-Request-Id`` header,
    else a fresh one. A malformed header is refused naming the header (the caller sent no
    ``request_id``; the logs take any 1-64 character id there, the key needs 8-64)."""
    if from_body is not None or header is None:
        return check_request_id(from_body)
    try:
        return check_request_id(header)
    except ForgeError:
        raise _invalid("x-request-id", "as the idempotency key of a spawn without "
                       "request_id: 8-64 characters of A-Z a-z 0-9 . _ -") from None


async def start_lab(request: Request, *, track: object, lab: object, request_id: object,
                    receipt: dict[str, Any] | None, assignment: object = None) -> SpawnAnswer:
    """Start a lab of `track` (its `lab`, else the track's default) for the request's caller.

    `receipt` is the verified receipt the caller presented (API header or the browser's
    receipt cookie). Refusals come before anything is reserved, in one order for both
    routes: field shapes, request id, track and lab, caller, entitlement, plan, the
    assignment gate (window and attempts of the learner's cohort assignment of this lab, or
    of `assignment` when named), quotas.
    """
    state = spawn_state(request)
    track_name = _text("track", track, MAX_TRACK, required=True)
    lab_name = _text("lab", lab, MAX_LAB, required=False, pattern=NAME_RE)
    assert track_name is not None
    assignment_id = _text("assignment_id", assignment, 32, required=False)
    if assignment_id is not None:
        check_public_id("assignment_id", assignment_id)
    rid = _text("request_id", request_id, 4096, required=False)  # its rules: below
    checked_id = _request_id(rid, request.headers.get("x-request-id"))
    template_id = choose_lab(state, track_name, lab_name)

    def identify() -> tuple[Caller, Entitlement, Preloaded]:
        with state.ctx.db.reading():  # one session and snapshot for every read below
            caller = identify_caller(request, receipt).whole_account()
            ent = resolve_entitlement(
                caller, settings=state.settings, catalog=state.catalog, db=state.ctx.db,
                receipt_claims=receipt, x_plan=request.headers.get("x-plan"),
                entitlements_file=state.entitlements_file,
            )
            return caller, ent, preload(state, caller, template_id, assignment_id)

    if state.entitlements_file is None:
        caller, ent, found = await read_call(state.ctx.db, identify)  # every read, at once
    else:  # the file may be read and parsed too: never on the event loop (large, slow disk)
        caller, ent, found = await run_in_threadpool(identify)
    await check_plan(state, caller, ent, track_name, template_id)
    refused = await keys_refused(state.peer_keys)
    if refused is not None:
        raise refused
    held = await admit(state, SpawnFacts(caller, ent, track_name, checked_id), template_id,
                       assignment_id, found)
    try:
        answer = await spawn(state, caller=caller, ent=ent, track=track_name,
                             request_id=checked_id, base_url=api_link(request, ""),
                             template_id=template_id,
                             assignment_id=held.assignment_id if held is not None else None)
    except BaseException:
        await settle(state, held, None)
        raise
    await settle(state, held, str(answer.body["scenario_id"]))
    return answer
