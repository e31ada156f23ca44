"""spawn_service JSON API: spawn, scenario status, submit, stub checkout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from forge.billing.receipts import ensure_stub_billing, new_subject, stub_checkout
from forge.bus import BusUnavailable
from forge.bus.contracts import SUBMITTED, ScenarioSubmitV1, payload, publish_event
from forge.bus.subjects import node_submit_subject
from forge.errors import ForgeError
from forge.identity.caller import AuthError, Caller
from forge.lifecycle.scenario_ids import check_scenario_id
from forge.lifecycle.store import ScenarioRecord, ScenarioRow, read_record
from forge.lifecycle.visibility import learner_view
from forge.services.common.openapi import errors
from forge.services.common.store_reads import read_call
from forge.services.spawn.caller_deps import (
    current_caller,
    identify_caller,
    receipt_claims,
    spawn_state,
)
from forge.services.spawn.labs import LAB_PATTERN
from forge.services.spawn.start import start_lab
from forge.services.spawn.state import SpawnState
from forge.services.spawn.submit_seal import seal_submitted
from forge.store.timestamps import aware, iso

router = APIRouter(tags=["learner"])
T = TypeVar("T")


class SpawnBody(BaseModel):
    """Shapes only: the values are checked by `start_lab`, as for the learner page's form."""

    model_config = ConfigDict(extra="forbid")
    track: Annotated[str, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 32})
                     ] = Field(description="The training track.")
    lab: Annotated[str, WithJsonSchema({"type": "string", "maxLength": 63,
                                        "pattern": LAB_PATTERN})] | None = Field(
        default=None,
        description="Which of the track's labs to start (a `lab` name from GET /v1/tracks); "
                    "without it, the track's default lab (the one named like the track).")
    request_id: str | None = Field(
        default=None, description="Idempotency key, the caller's own: the same id with the "
        "same track and lab within 24 h answers with the first result; with another track "
        "or lab, 409. Another learner's use of the same id never affects yours. Without it, "
        "the `X-Request-Id` header is the key; without either, a retried request starts "
        "another lab.")
    assignment_id: str | None = Field(
        default=None, min_length=1, max_length=32,
        description="The cohort assignment this lab is started for (GET /v1/assignments); "
                    "without it, the learner's assignment of this lab, if any, applies "
                    "(409 assignment_ambiguous when more than one of their classes has it "
                    "open).")


class CheckoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=32)
    tenant_id: str | None = Field(default=None, min_length=1, max_length=128)
    subject: str | None = Field(default=None, min_length=1, max_length=128)
    days: int = Field(default=30, ge=1, le=366, strict=True)  # {"days": true} is not 1


# Read by `start_lab` (the idempotency key when the body has no `request_id`), so a client
# generated from the OpenAPI document knows that the correlation id it may send for the
# logs also makes its spawn idempotent, and must be 8-64 characters here.
_REQUEST_ID_HEADER = {"parameters": [
    {"name": "X-Request-Id", "in": "header", "required": False,
     "description": "Also the request's id in the logs. Without `request_id` in the body, "
                    "the idempotency key: the same id again within 24 h answers with the "
                    "first result (200), with another track or lab 409. 422 naming "
                    "`x-request-id` unless 8-64 characters of A-Z a-z 0-9 . _ -.",
     "schema": {"type": "string", "minLength": 8, "maxLength": 64,
                "pattern": r"^[A-Za-z0-9._-]{8,64}$"}}]}


@router.post("/v1/spawn", status_code=201, openapi_extra=_REQUEST_ID_HEADER,
             responses={200: {"description": "The first answer to this idempotency key, "
                                             "again (a retried request)",
                              "content": {"application/json": {"schema": {}}}},
                        **errors(400, 401, 403, 404, 409, 429, 503)})
async def post_spawn(body: SpawnBody, request: Request) -> JSONResponse:
    """Start a lab: `track`, and optionally which of its labs (`lab`, else the track's
    default). 400 unknown_track/unknown_lab, 403 when the plan lacks the track or the lab's
    tier; 403 assignment_refused outside the window of the learner's cohort assignment of
    this lab or with its attempts used (the policy's reasons say when it opens); 404 for an
    assignment_id that is not theirs; nothing is counted or reserved on a refusal.
    Idempotent by request_id (else X-Request-Id) for 24 h: a first answer is 201, its
    replay 200."""
    answer = await start_lab(request, track=body.track, lab=body.lab,
                             request_id=body.request_id, receipt=receipt_claims(request),
                             assignment=body.assignment_id)
    return JSONResponse(answer.body, status_code=answer.status)


def learner_hosts(state: SpawnState, row: ScenarioRow) -> tuple[str, ...]:
    """The hosts of the lab's template its learner may open terminals on (none for a
    template no longer loaded, as the orchestrator decides)."""
    facts = state.templates.get(row.template_id)
    return facts.learner_hosts if facts is not None else ()


def _scenario_view(row: ScenarioRow, terminal_hosts: tuple[str, ...]) -> dict[str, Any]:
    hosts, others = learner_view(row.details.get("hosts", {}), terminal_hosts)
    return {
        "scenario_id": row.scenario_id,
        "state": row.state,
        "reason": row.state_reason,
        "track": row.track,
        "template_id": row.template_id,
        "plan": row.plan,
        # With their zone (UTC): SQLite hands them back naive, and a client (a browser's
        # Date.parse) reads a time without one as its own local time (probe AT).
        "created_at": aware(row.created_at).isoformat(),
        "updated_at": aware(row.updated_at).isoformat(),
        "expires_at": iso(row.expires_at),
        "hosts": hosts,
        "other_hosts": others,
        "terminal_hosts": list(terminal_hosts),
    }


async def owned_scenario(request: Request, scenario_id: str) -> ScenarioRecord:
    """The caller's own scenario: 422 for a malformed id (before anything is read), 404
    for anyone else's (no existence oracle).

    One read session for the caller and the row, inline on SQLite (`read_call`): the lab
    page polls this every few hundred milliseconds per learner."""
    return (await owned_scenario_and(request, scenario_id, None))[0]


async def owned_scenario_and(request: Request, scenario_id: str,
                             also: Callable[[ScenarioRecord], T] | None,
                             ) -> tuple[ScenarioRecord, T | None]:
    """`owned_scenario`, and ``also(row)`` (a store read only) in the same read session,
    run only once the row is known to be the caller's: the lab page's poll reads the
    lab's hint reveals with its row, not in a second session on a worker thread."""
    check_scenario_id(scenario_id)
    missing = ForgeError("not_found", 404, "scenario not found")
    db = spawn_state(request).ctx.db

    def load() -> tuple[Caller, ScenarioRecord | None, T | None]:
        with db.reading() as sess:
            caller = identify_caller(request)
            if not caller.may_see(scenario_id):
                return caller, None, None
            row = read_record(sess.connection(), scenario_id)
            if row is None or also is None or not caller.owns(row.tenant_id, row.subject):
                return caller, row, None
            return caller, row, also(row)

    caller, row, extra = await read_call(db, load)
    if row is None or not caller.owns(row.tenant_id, row.subject):
        raise missing
    return row, extra


@router.get("/v1/scenarios/{scenario_id}", responses=errors(401, 404))
async def get_scenario(scenario_id: str, request: Request) -> dict[str, Any]:
    """Status of one of the caller's scenarios."""
    row = await owned_scenario(request, scenario_id)
    return _scenario_view(row, learner_hosts(spawn_state(request), row))


def grading_for_a_submit(row: ScenarioRecord) -> bool:
    """Whether a lab in ``grading`` grades for a learner's submit: one made in time
    (reason ``submitted``) or one made after the lab's end time, which the node records as
    the lab's expiry (``grade_lab.graded_reason``) with the submit's time in the details.
    The reaper's own expiry keeps no submit time: a submit racing it is still refused."""
    details = row.details if isinstance(row.details, dict) else {}
    return row.state_reason == SUBMITTED or (
        row.state_reason == "expired" and isinstance(details.get("submitted_at"), str))


@router.post("/v1/scenarios/{scenario_id}/submit", status_code=202,
             responses=errors(401, 403, 404, 409, 503))
async def submit(scenario_id: str, request: Request) -> dict[str, Any]:
    """Ask the orchestrator to grade the lab and finish it."""
    row = await owned_scenario(request, scenario_id)
    if row.state == "grading" and grading_for_a_submit(row):
        # A retry (after a 503 whose event reached the bus, or a double click): the submit
        # was applied, so it is answered as one, not refused.
        return {"scenario_id": scenario_id, "status": "grading_requested"}
    if row.state != "running":
        raise ForgeError("not_running", 409, f"scenario is {row.state}; only a running lab "
                         "can be submitted")
    event = ScenarioSubmitV1(scenario_id=scenario_id, tenant_id=row.tenant_id,
                             subject=row.subject, reason=SUBMITTED)
    try:
        if row.node_id is None:
            await publish_event(spawn_state(request).publisher, event,
                                msg_id=f"submit-{scenario_id}")
        else:  # straight to the node holding the lab, on its own subject
            await spawn_state(request).publisher.publish(
                node_submit_subject(row.node_id), payload(event), msg_id=f"submit-{scenario_id}")
    except BusUnavailable:
        # The event may have reached the bus before the answer was lost: graded once,
        # whatever the retry does (its msg_id is the scenario's).
        raise ForgeError("bus_unavailable", 503, "the event bus did not confirm the "
                         "submit; it may already be recorded. Retry: a submit is never "
                         "graded twice", headers={"Retry-After": "5"}) from None
    # Submitted: no more work in the lab while its grading waits its turn (submit_seal).
    await seal_submitted(spawn_state(request).settings, request.app.state.http.client, row)
    return {"scenario_id": scenario_id, "status": "grading_requested"}


async def _buyer(request: Request) -> Caller | None:
    """The signed-in buyer (API key, session, or a receipt that proves its learner), or None.
    Dev-only headers prove nothing and do not count: a receipt outlives the request."""
    try:
        caller = await current_caller(request, receipt_claims(request))
    except AuthError as exc:
        if exc.code == "credentials_required":
            return None
        raise
    if caller.via == "dev_headers" or caller.scenario_scope is not None:
        return None  # a lab's access link session buys as nobody (as the checkout page)
    return caller


def _receipt_owner(body: CheckoutBody, buyer: Caller | None) -> tuple[str, str, str]:
    """(tenant, subject, proof): the signed-in buyer, or a new learner for an anonymous one.
    Never a learner named by an unauthenticated body (that would mint their identity)."""
    if buyer is None:
        if body.subject is not None:
            raise ForgeError("credentials_required", 401,
                             "subject: sign in as this learner to buy for them; without signing "
                             "in, leave subject out and checkout creates a new learner",
                             [{"field": "subject"}])
        if body.tenant_id is None:
            raise ForgeError("checkout_refused", 400, "tenant_id: required when not signed in",
                             [{"field": "tenant_id"}])
        return body.tenant_id, new_subject(), "new"
    for name, mine in (("tenant_id", buyer.tenant_id), ("subject", buyer.subject)):
        given = getattr(body, name)
        if given is not None and given != mine:
            raise ForgeError("not_the_buyer", 403,
                             f"{name}: a receipt can only name the signed-in learner",
                             [{"field": name}])
    return buyer.tenant_id, buyer.subject, "caller"


@router.post("/v1/billing/checkout", status_code=201, tags=["billing"],
             responses=errors(400, 401, 403))
async def checkout(body: CheckoutBody, request: Request) -> dict[str, Any]:
    """BILLING_MODE=stub: fake charge, then a receipt for the signed-in learner, or for a new
    learner created here when the buyer is not signed in (`new_subject` says which)."""
    state = spawn_state(request)
    ensure_stub_billing(state.settings)
    tenant, subject, proof = _receipt_owner(body, await _buyer(request))
    receipt = stub_checkout(state.settings, state.catalog, tenant_id=tenant, plan=body.plan,
                            subject=subject, subject_proof=proof, days=body.days)
    claims = receipt.claims
    return {"receipt": receipt.token, "plan": claims["plan"], "tenant_id": claims["tenant_id"],
            "subject": claims.get("sub"), "new_subject": proof == "new",
            "charge_id": claims["charge_id"], "retention_days": claims["retention_days"],
            "expires_at": int(claims["exp"])}
