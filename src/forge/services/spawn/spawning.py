"""POST /v1/spawn: validate, identify, entitle, limit, mint, persist, publish — or undo."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from forge.audit.log import scenario_log
from forge.billing import ledger
from forge.bus import BusOutcomeUnknown, BusUnavailable
from forge.bus.contracts import SpawnRequestedV1, publish_event
from forge.entitlements.resolve import Entitlement, mint_et
from forge.errors import ForgeError, invalid_field
from forge.faults import crash_point
from forge.identity.caller import OPENED_WITH_KEY, Caller
from forge.lifecycle import states
from forge.lifecycle.states import IllegalTransition
from forge.lifecycle.store import move
from forge.quotas.limiter import QuotaExceeded, Taken, give_back, release, take
from forge.services.spawn.state import SpawnState
from forge.store import idempotency
from forge.store.models import Scenario, ScenarioTransition
from forge.store.prepared import Prepared
from forge.tokens import ACCESS, SAT, mint_token_claims

SCENARIOS: Table = Scenario.__table__  # type: ignore[assignment]
TRANSITIONS: Table = ScenarioTransition.__table__  # type: ignore[assignment]
# Run through the driver (forge.store.prepared): every spawn inserts one of each.
INSERT_SCENARIO = Prepared(insert(SCENARIOS), [
    "scenario_id", "request_id", "tenant_id", "subject", "track", "template_id",
    "template_sha256", "plan", "retention_days", "state", "state_reason", "sat_jti", "et_jti",
    "created_at", "updated_at", "expires_at", "details"])
INSERT_TRANSITION = Prepared(insert(TRANSITIONS),
                             [c.name for c in TRANSITIONS.c if c.name != "id"])
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}\Z")


@dataclass(frozen=True)
class SpawnAnswer:
    """HTTP status and body of a spawn request (201 new, 200 replay)."""

    status: int
    body: dict[str, Any]


def new_scenario_id() -> str:
    """`scn-` + 16 lowercase hex characters."""
    return "scn-" + secrets.token_hex(8)


def check_request_id(value: str | None) -> str:
    """A caller-chosen request id, or a fresh one when none was given."""
    if value is None:
        return "req-" + secrets.token_hex(12)
    if not REQUEST_ID.match(value):
        # 422 naming the field, as every other malformed field of the request (was a 400).
        raise invalid_field("request_id", "8-64 characters of A-Z a-z 0-9 . _ -")
    return value


def _iso(ts: float | int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StalePending(Exception):
    """The request id's earlier attempt died before answering (see ``_resolve_stale``)."""


def _replay(record: idempotency.Stored, digest: str, now: datetime,
            pending_timeout: timedelta) -> SpawnAnswer:
    if record.fingerprint != digest:
        raise ForgeError("request_id_conflict", 409,
                         "request_id was already used for a different request",
                         [{"field": "request_id"}])
    if record.stale(now, pending_timeout):
        raise StalePending()
    if record.status_code == idempotency.PENDING:
        raise ForgeError("request_in_progress", 409,
                         "a request with this request_id is still being processed; retry",
                         headers={"Retry-After": "1"})
    return SpawnAnswer(200, dict(record.response))


def _reserve(
    state: SpawnState, *, request_id: str, key: str, digest: str, caller: Caller,
    ent: Entitlement, track: str, template_id: str, scenario_id: str, sat_jti: str,
    et_jti: str,
) -> SpawnAnswer | Taken:
    """One transaction: replay check, limits, slot, scenario row, idempotency reservation
    (under `key`, the caller's own request id); the answers of earlier spawns still
    waiting to be stored (`AnswerBook`) ride along."""
    now = datetime.now(UTC)
    pending_timeout = timedelta(seconds=state.settings.spawn_pending_timeout_s)
    answers = state.answers
    queued = answers.take()
    try:
        with state.ctx.db.session() as sess:
            answers.write(sess, queued)
            existing, old = idempotency.find_both(sess, key, request_id, now)
            if existing is not None:
                result: SpawnAnswer | Taken = _replay(existing, digest, now, pending_timeout)
            elif (legacy := _legacy_answer(old, digest, now, pending_timeout)) is not None:
                result = legacy
            else:
                result = _record(sess, request_id=request_id, key=key, digest=digest,
                                 caller=caller, ent=ent, track=track, template_id=template_id,
                                 scenario_id=scenario_id, sat_jti=sat_jti, et_jti=et_jti,
                                 now=now)
    except BaseException as exc:
        answers.put_back(queued)  # rolled back with this transaction: queue them again
        if not isinstance(exc, IntegrityError):
            raise
        lost_race = exc
    else:
        answers.written(queued)
        return result
    # A concurrent request with the same id won the race; answer as it will.
    with state.ctx.db.session() as sess:
        record = idempotency.find(sess, key, now)
        if record is None:
            raise lost_race
        return _replay(record, digest, now, pending_timeout)


def _legacy_answer(old: idempotency.Stored | None, digest: str, now: datetime,
                   pending_timeout: timedelta) -> SpawnAnswer | None:
    """The answer this caller got for their request id from a release that kept records
    under the bare id (kept 24 h at most; `old` is the record under it, or None): replayed
    when it is theirs and complete, 409 `request_in_progress` while theirs is still in
    flight (a retry during the upgrade must not start a second lab); anyone else's is not
    seen at all. One left pending by a
    process that died is not waited for (the reaper ends its scenario)."""
    if old is None or old.fingerprint != digest or old.stale(now, pending_timeout):
        return None
    return _replay(old, digest, now, pending_timeout)


def _record(
    sess: Session, *, request_id: str, key: str, digest: str, caller: Caller,
    ent: Entitlement,
    track: str, template_id: str, scenario_id: str, sat_jti: str, et_jti: str, now: datetime,
) -> Taken:
    """Inside the reservation: limits and slot, scenario row and its first transition, and
    the request id claimed (pending)."""
    taken = take(sess, scenario_id=scenario_id, tenant_id=caller.tenant_id,
                 subject=caller.subject, plan=ent.plan, now=now)
    conn = sess.connection()
    INSERT_SCENARIO.execute(conn, dict(
        scenario_id=scenario_id, request_id=request_id, tenant_id=caller.tenant_id,
        subject=caller.subject, track=track, template_id=template_id,
        template_sha256=None, plan=ent.plan.name, retention_days=ent.retention_days,
        state="pending", state_reason="spawn requested", sat_jti=sat_jti, et_jti=et_jti,
        created_at=now, updated_at=now, expires_at=None,
        details={"entitlement_source": ent.source},
    ))
    INSERT_TRANSITION.execute(conn, dict(
        scenario_id=scenario_id, from_state=None, to_state="pending",
        reason="spawn requested", at=now,
    ))
    idempotency.reserve(sess, key, digest, now)
    return taken


def _resolve_stale(state: SpawnState, request_id: str, key: str,
                   caller: Caller) -> tuple[str, str] | None:
    """Settle a request whose process died between recording it and answering.

    If the orchestrator never took its scenario (still ``pending``), that scenario is failed
    with the reason, its slot released and the record dropped: the retry proceeds as a new
    request (None). Otherwise the orchestrator has it: (scenario_id, subject) to answer the
    retry with that scenario.
    """
    with state.ctx.db.read() as sess:
        row = sess.execute(
            select(SCENARIOS.c.scenario_id, SCENARIOS.c.state, SCENARIOS.c.subject)
            .where(SCENARIOS.c.request_id == request_id,
                   SCENARIOS.c.tenant_id == caller.tenant_id,
                   SCENARIOS.c.subject == caller.subject)
            .order_by(SCENARIOS.c.created_at.desc()).limit(1)
        ).first()
    if row is not None and row.state != states.PENDING:
        return str(row.scenario_id), str(row.subject)
    if row is not None:
        try:
            move(state.ctx.db, state.settings.storage_root, row.scenario_id, states.FAILED,
                 "the spawn request was interrupted before it was answered; it was retried",
                 expected=states.PENDING)
        except IllegalTransition:  # the orchestrator took it meanwhile: answer with it
            return str(row.scenario_id), str(row.subject)
        release(state.ctx.db, row.scenario_id)
    with state.ctx.db.session() as sess:
        idempotency.discard(sess, key)
    return None


def _withdraw(state: SpawnState, taken: Taken, key: str) -> None:
    """Give back everything of a spawn whose event certainly was not stored."""
    with state.ctx.db.session() as sess:
        give_back(sess, taken)
        conn = sess.connection()
        conn.execute(delete(TRANSITIONS).where(TRANSITIONS.c.scenario_id == taken.scenario_id))
        conn.execute(delete(SCENARIOS).where(SCENARIOS.c.scenario_id == taken.scenario_id))
        idempotency.discard(sess, key)


def _tombstone(state: SpawnState, taken: Taken, key: str) -> bool:
    """Take back a spawn whose event may have been stored, unless the orchestrator has it.

    When JetStream's confirmation is lost the event may still be delivered, and the
    orchestrator recreates a missing scenario row from a valid event. So the row is kept:
    failed with the reason while still ``pending`` (the orchestrator skips the event of a
    failed scenario), its slot and spawn counts given back, the request id forgotten: True.
    If the orchestrator got there first the spawn went through: False, nothing is undone.
    """
    reason = "the event bus did not confirm the spawn request; it was not carried out"
    now = datetime.now(UTC)
    # One transaction: a crash cannot leave a failed scenario holding its slot, or a
    # forgotten request whose scenario still waits for the orchestrator.
    with state.ctx.db.session() as sess:
        row = sess.get(Scenario, taken.scenario_id, with_for_update=True)
        if row is not None and row.state != states.PENDING:
            return False
        if row is not None:
            row.state, row.state_reason, row.updated_at = states.FAILED, reason, now
            sess.add(ScenarioTransition(scenario_id=taken.scenario_id, from_state=states.PENDING,
                                        to_state=states.FAILED, reason=reason, at=now))
        give_back(sess, taken)
        idempotency.discard(sess, key)
    if row is not None:
        scenario_log(state.settings.storage_root, taken.scenario_id).append(
            "scenario.state", {"from": states.PENDING, "to": states.FAILED, "reason": reason},
            at=now)
    return True


async def spawn(
    state: SpawnState, *, caller: Caller, ent: Entitlement, track: str, request_id: str,
    base_url: str, template_id: str | None = None, assignment_id: str | None = None,
) -> SpawnAnswer:
    """Run one spawn request end to end; on any failure after reserving, give it all back.

    `template_id` is the chosen lab (already checked against the track and the plan); None
    starts the track's default lab. `assignment_id`: the assignment the spawn counts for.
    """
    default = state.track_templates[track]
    template_id = template_id or default
    # The lab is part of "the same request"; the default keeps the fingerprint it always
    # had, so a retry of a request recorded before labs could be chosen still replays. So
    # is the assignment: the id of a request started for one assignment, sent again for
    # another, must not replay the first lab as the second's attempt (409 instead).
    parts: tuple[str, ...] = (track,) if template_id == default else (track, template_id)
    if assignment_id is not None:
        parts += ("assignment", assignment_id)
    digest = idempotency.fingerprint(caller.tenant_id, caller.subject, *parts)
    key = idempotency.record_key(caller.tenant_id, caller.subject, request_id)
    settings = state.settings
    scenario_id = new_scenario_id()
    et_token, et_claims = mint_et(settings, ent)
    sat_token, sat_claims = mint_token_claims(settings.sat, SAT, {
        "scenario_id": scenario_id, "track": track, "template_id": template_id,
        "sub": caller.subject, "tenant_id": caller.tenant_id, "plan": ent.plan.name,
        "et_jti": et_claims["jti"],
    })
    def reserve() -> SpawnAnswer | Taken:
        return _reserve(
            state, request_id=request_id, key=key, digest=digest, caller=caller, ent=ent,
            track=track, template_id=template_id, scenario_id=scenario_id,
            sat_jti=sat_claims["jti"], et_jti=et_claims["jti"],
        )

    try:
        try:
            reserved = await state.ctx.db.write(reserve)
        except StalePending:
            resumed = await state.ctx.db.write(_resolve_stale, state, request_id, key, caller)
            if resumed is not None:
                return await _answer(state, caller, request_id, resumed[0], base_url, 200)
            reserved = await state.ctx.db.write(reserve)
    except StalePending:
        raise ForgeError("request_in_progress", 409,
                         "a request with this request_id is still being processed; retry",
                         headers={"Retry-After": "1"}) from None
    except QuotaExceeded as exc:
        await audit_decision(state, caller, ent, "spawn_denied",
                             {"reason": str(exc), "track": track})
        raise _quota_error(exc) from None
    if isinstance(reserved, SpawnAnswer):
        return reserved
    crash_point("spawn.recorded")
    try:
        # Inside the try: an event its contract refuses undoes the reservation too.
        event = SpawnRequestedV1(
            scenario_id=scenario_id, request_id=request_id, track=track,
            template_id=template_id, tenant_id=caller.tenant_id, subject=caller.subject,
            plan=ent.plan.name, retention_days=ent.retention_days, sat=sat_token,
            et=et_token, requested_at=_iso(sat_claims["iat"]),
        )
        await publish_event(state.publisher, event, msg_id=f"spawn-{scenario_id}")
    except BusOutcomeUnknown:
        if await state.ctx.db.write(_tombstone, state, reserved, key):
            raise _bus_unavailable() from None
        # The event was stored after all and the orchestrator has the scenario: answer it.
    except BusUnavailable:
        await state.ctx.db.write(_withdraw, state, reserved, key)
        raise _bus_unavailable() from None
    except BaseException:
        await state.ctx.db.write(_tombstone, state, reserved, key)
        raise
    crash_point("spawn.published")
    answer = await _answer(state, caller, request_id, scenario_id, base_url, 201)
    await audit_decision(state, caller, ent, "spawn_accepted",
                         {"scenario_id": scenario_id, "track": track})
    return answer


def _quota_error(exc: QuotaExceeded) -> ForgeError:
    """429 naming the limit; for too many running labs, the caller's lab that ends first
    (`running_lab`, its page) and a Retry-After of when that slot frees."""
    detail: dict[str, Any] = {"kind": exc.kind, "scope": exc.scope, "limit": exc.limit}
    message = str(exc)
    if exc.kind == "concurrency":
        if exc.running is not None:
            detail.update(scenario_id=exc.running, running_lab=f"/lab/{exc.running}")
            message += (f"; your lab {exc.running} is still running (/lab/{exc.running}): "
                        "finish or submit it to start another")
        message += f"; a slot frees in about {max(1, round(exc.retry_after / 60))} min"
    return ForgeError("quota_exceeded", 429, message, [detail],
                      headers={"Retry-After": str(exc.retry_after)})


def _bus_unavailable() -> ForgeError:
    return ForgeError("bus_unavailable", 503,
                      "the event bus is unreachable; the lab was not started and nothing was "
                      "charged; retry", headers={"Retry-After": "5"})


async def _answer(state: SpawnState, caller: Caller, request_id: str, scenario_id: str,
                  base_url: str, status: int) -> SpawnAnswer:
    """Mint the learner's access link, store the answer under the request id, return it."""
    claims = {"scenario_id": scenario_id, "sub": caller.subject, "tenant_id": caller.tenant_id}
    if caller.key_id is not None:  # the link's session ends with the key that started the lab
        claims[OPENED_WITH_KEY] = caller.key_id
    access, access_claims = mint_token_claims(state.settings.sat, ACCESS, claims)
    body = {
        "request_id": request_id,
        "scenario_id": scenario_id,
        "status": "pending",
        "access_url": f"{base_url.rstrip('/')}/v1/access/{scenario_id}?token={access}",
        "expires_at": _iso(int(access_claims["exp"])),
    }
    # Group commit: stored by the next write transaction; reply only once it committed.
    key = idempotency.record_key(caller.tenant_id, caller.subject, request_id)
    await asyncio.wrap_future(state.answers.add(key, 201, body))
    return SpawnAnswer(status, body)


async def audit_decision(
    state: SpawnState, caller: Caller, ent: Entitlement, event: str, data: dict[str, Any]
) -> None:
    """Receipt-based decisions go into the tenant's billing ledger."""
    if ent.source != "receipt":
        return
    record = {"subject": caller.subject, "plan": ent.plan.name, "receipt_jti": ent.receipt_jti,
              **data}
    await state.ctx.db.write(ledger.append, state.ctx.db, caller.tenant_id, event, record)
