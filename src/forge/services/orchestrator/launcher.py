"""forge.spawn.requested → a running lab (or a failed scenario with its reasons)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from forge.audit.log import scenario_log
from forge.bus import Event, Reject, RetryLater
from forge.bus.contracts import ContractError, SpawnRequestedV1, decode_as
from forge.faults import crash_point
from forge.lifecycle import states
from forge.lifecycle.store import (
    ScenarioNotFound,
    Transition,
    audit_move,
    load,
    move,
    record_move,
    set_details,
)
from forge.policy.decision import PolicyError, PolicyUnavailable
from forge.policy.inputs import build_training_input
from forge.runtime.base import LabInfo, LabNotFound, LabSpec, RuntimeFault
from forge.services.orchestrator.admission import AdmissionRefused, Admitted, verify_spawn_event
from forge.services.orchestrator.labspec import lab_spec
from forge.services.orchestrator.node import NOT_HERE_DELAY_S, lab_memory_mb
from forge.services.orchestrator.state import OrchestratorState
from forge.store.models import Scenario, ScenarioTransition
from forge.templates.problems import TemplateError, UnknownTemplate
from forge.templates.variables import generate_values, render
from forge.tokens import TokenReplayed
from forge.tokens.replay import consume_once
from forge_verify.score import SCENARIO_ID_RE

log = logging.getLogger("forge.orchestrator.launch")
POLICY_RETRY_S = 2.0
MAX_LAUNCH_ATTEMPTS = 3
BUILD_SETTLE_S = 30.0  # how long a cancelled launch waits for its build thread


def _ensure_row(state: OrchestratorState, event: SpawnRequestedV1, admitted: Admitted) -> None:
    """Create the scenario row from verified claims when spawn_service's row is not here."""
    now = datetime.now(UTC)
    sat, et = admitted.sat, admitted.et
    with state.ctx.db.session() as sess:
        if sess.get(Scenario, admitted.scenario_id) is not None:
            return
        sess.add(Scenario(
            scenario_id=admitted.scenario_id, request_id=event.request_id,
            tenant_id=sat["tenant_id"], subject=sat["sub"], track=sat["track"],
            template_id=sat["template_id"], template_sha256=None, plan=sat["plan"],
            retention_days=int(et["retention_days"]), state=states.PENDING,
            state_reason="spawn requested", sat_jti=sat["jti"], et_jti=et["jti"],
            created_at=now, updated_at=now, expires_at=None, details={},
        ))


async def _fail(state: OrchestratorState, scenario_id: str, reason: str,
                details: dict[str, Any]) -> None:
    transition = await state.blocking(
        lambda: move(state.ctx.db, state.settings.storage_root, scenario_id, states.FAILED,
                     reason, details=details)
    )
    await state.announce(transition)


def _holder(state: OrchestratorState) -> dict[str, str | None]:
    """The node columns written with the move to launching (same transaction, row lock)."""
    node = state.node
    # node_url only when FORGE_NODE_URL is set: otherwise spawn_service's own ORCHESTRATOR_URL
    # is the way to this (one) node, as before nodes existed.
    return {} if node is None else {"node_id": node.node_id,
                                    "node_url": state.settings.node_url}


async def _refuse_broken(state: OrchestratorState, event: Event, exc: ContractError) -> None:
    """Fail the pending scenario a contract-breaking spawn event names, freeing its slot —
    only when the event also names that scenario's tenant and subject, since its token could
    not be checked. (Consumers learn a new version before publishers send it; an unknown
    version here is a rollout out of order, and the learner gets the reason, not a hang.)"""
    scenario_id = event.data.get("scenario_id")
    if not isinstance(scenario_id, str) or SCENARIO_ID_RE.fullmatch(scenario_id) is None:
        return
    async with state.lock_for(scenario_id):
        try:
            row = await state.blocking(load, state.ctx.db, scenario_id)
        except ScenarioNotFound:
            return
        own = (event.data.get("tenant_id") == row.tenant_id
               and event.data.get("subject") == row.subject)
        if own and row.state == states.PENDING:
            await _fail(state, scenario_id, f"spawn event refused: {exc.code}",
                        {"refused": exc.code})


async def handle_spawn(state: OrchestratorState, event: Event) -> None:
    """Consumer handler: idempotent; outages retry, defects fail the scenario with reasons.

    The body is decoded through its contract first; one that breaks it (invalid, unknown
    version) is rejected with the reason, and its scenario, when still pending here, fails
    with that reason so its slot is freed."""
    try:
        spawn = decode_as(SpawnRequestedV1, event.subject, event.raw)
    except ContractError as exc:
        await _refuse_broken(state, event, exc)
        raise Reject(str(exc)) from None
    scenario_id = spawn.scenario_id
    async with state.lock_for(scenario_id):
        try:
            row = await state.blocking(load, state.ctx.db, scenario_id)
        except ScenarioNotFound:
            row = None
        if row is not None and row.state != states.PENDING:
            log.info("spawn event for %s redelivered; already %s", scenario_id, row.state)
            if row.state != states.LAUNCHING or not state.holds(row.node_id):
                return  # another node's launching lab is its reaper's to resume
            template_id = row.template_id
        else:
            await _admit_and_launch(state, spawn, row)
            return
    # An attempt here failed after the move to launching (its announce met a NATS outage,
    # its audit write a full disk): the event came back, so the launch resumes now instead
    # of waiting STUCK_LAUNCHING for the reaper. No lock is held in between that another
    # attempt could use: resume_launch checks the state again under it.
    await _resume_redelivered(state, scenario_id, template_id)


async def _resume_redelivered(state: OrchestratorState, scenario_id: str,
                              template_id: str) -> None:
    """Resume a launch this node holds, with room reserved for it as a first attempt has.

    A resume that fails is logged and left to the reaper (its own attempts are counted
    there), not retried through the bus until the event is dead-lettered."""
    node = state.node
    if node is not None and not node.reserve(scenario_id,
                                             lab_memory_mb(state.registry, template_id)):
        raise RetryLater(NOT_HERE_DELAY_S, f"lab node {node.node_id} is full or drained")
    try:
        ended = await resume_launch(state, scenario_id)
    except Exception as exc:
        # Its row is launching (or further) on this node still: the slot stays held, as
        # the heartbeat's count of this node's live rows has it anyway.
        log.warning("scenario %s: resuming its launch failed (%s); the reaper retries",
                    scenario_id, exc)
        return
    if node is not None and ended not in states.LIVE:
        node.release(scenario_id)


async def _admit_and_launch(state: OrchestratorState, spawn: SpawnRequestedV1,
                            row: Scenario | None) -> None:
    """A pending (or not yet stored) scenario: verify its tokens, hold room, launch."""
    scenario_id = spawn.scenario_id
    try:
        admitted = verify_spawn_event(state.settings, spawn)
    except AdmissionRefused as exc:
        if row is None:
            raise Reject(f"{exc.code}: {exc.message}") from None
        await _fail(state, scenario_id, exc.message, {"refused": exc.code})
        return
    if row is None:
        await state.blocking(_ensure_row, state, spawn, admitted)
    node = state.node
    if node is not None and not node.reserve(
            scenario_id, lab_memory_mb(state.registry, spawn.template_id)):
        # Taken when it fitted, no longer fits (or the node is drained): back to the
        # queue for another node, not a failure.
        raise RetryLater(NOT_HERE_DELAY_S, f"lab node {node.node_id} is full or drained")
    try:
        await _launch(state, admitted)
    except BaseException:
        if node is not None:
            node.release(scenario_id)
        raise


async def _launch(state: OrchestratorState, admitted: Admitted) -> None:
    sat, et = admitted.sat, admitted.et
    scenario_id = admitted.scenario_id
    try:
        loaded = state.registry.get(str(sat["template_id"]))
    except UnknownTemplate:
        await _fail(state, scenario_id, "template is not loaded", {"refused": "unknown_template"})
        return
    policy_input = build_training_input(
        loaded.template, plan_name=str(et["plan"]), plan_tracks=list(et["tracks"]),
        requested_track=str(sat["track"]), template_sha256=loaded.sha256,
    )
    try:
        # Training and capabilities gates in one query (forge.gates.launch).
        gates = await state.blocking(state.engine.decide_gates, "launch", policy_input)
    except PolicyUnavailable as exc:
        log.warning("policy engine unavailable for %s; will retry: %s", scenario_id, exc)
        raise RetryLater(POLICY_RETRY_S, "policy engine unavailable") from None
    except PolicyError as exc:
        # A defect, not an outage (e.g. a remote OPA without gates.rego, an input the
        # engine refuses): a retry would meet it again, so the scenario fails with the
        # error recorded, as a denial is, instead of being redelivered to dead letters.
        log.error("policy evaluation failed for %s: %s", scenario_id, exc)
        await _fail(state, scenario_id, "policy evaluation failed: " + str(exc),
                    {"policy": {"error": str(exc), "input": policy_input}})
        return
    decision = gates.combined
    # Every decision is recorded, a cache answer too (marked `cached`).
    decision_record = {"allow": decision.allow, "reasons": decision.reasons,
                       "policy_hash": decision.policy_hash, "cached": decision.cached,
                       "input": policy_input}
    if not decision.allow:
        await _fail(state, scenario_id, "policy denied: " + "; ".join(decision.reasons),
                    {"policy": decision_record})
        return
    expires = datetime.fromtimestamp(int(sat["exp"]), UTC)
    # Mark the row before consuming: a crash between the two leaves a marked row whose
    # redelivered event then finds its own jti consumed, which is not a replay.
    row = await state.blocking(load, state.ctx.db, scenario_id)
    ours = row.details.get("sat_consuming") == sat["jti"]
    if not ours:
        await state.blocking(lambda: set_details(
            state.ctx.db, state.settings.storage_root, scenario_id,
            {"sat_consuming": str(sat["jti"])}, "consuming the spawn's SAT"))
    try:
        await state.blocking(consume_once, state.replay, str(sat["jti"]), "SAT", expires)
    except TokenReplayed:
        if not ours:
            await _fail(state, scenario_id, "SAT was already used",
                        {"refused": "sat_replayed"})
            return
    values = generate_values(loaded.template)
    # Rendered before the move: a pooled lab is claimed within ~10 ms of it.
    try:
        spec = lab_spec(scenario_id, render(loaded.template, values))
    except (TemplateError, ValueError) as exc:  # fails now, as a build would have
        await _fail(state, scenario_id, f"lab could not be created: {exc}", {})
        return
    launching = await state.blocking(
        lambda: record_move(state.ctx.db, scenario_id, states.LAUNCHING, "policy allowed",
                            updates={"template_sha256": loaded.sha256, **_holder(state)},
                            details={"policy": decision_record, "variables": values,
                                     "tokens": {"sat": admitted.sat_token,
                                                "et": admitted.et_token}})
    )
    await _build(state, spec, str(et["plan"]), str(sat["template_id"]), launched=launching)


async def _build(state: OrchestratorState, spec: LabSpec, plan_name: str, template_id: str,
                 *, launched: Transition | None = None) -> None:
    """Create the lab of a ``launching`` scenario and mark it running, or fail it.

    ``launched``: the move to launching, recorded in the store but not yet in the audit
    log. The lab is then built while that entry is written (an fsync) and announced, not
    after: both are waits, each a few milliseconds of a pooled spawn's ~10. Both finish
    before the scenario's next move (the log stays in order), and the scenario's lock is
    held until the build ends (a retry never meets a half-built lab), on cancellation too
    (a subscriber restart, a shutdown) for up to BUILD_SETTLE_S. A failed audit or
    announce destroys the lab again, as if the move had failed."""
    scenario_id = spec.lab_id
    creating = asyncio.ensure_future(state.blocking(state.runtime.create, spec))
    if launched is not None:
        try:
            await state.blocking(audit_move, state.settings.storage_root, launched)
            await state.announce(launched)
            crash_point("orchestrator.launching")
        except Exception as exc:
            # As when the move itself failed: no lab stays behind a scenario left
            # launching (the reaper resumes it and builds again); the build's own error,
            # if any, is logged, the audit or announce error is the one raised.
            await _undo_build(state, scenario_id, creating, exc)
            raise
        except BaseException:  # cancelled (shutdown): a restart resumes the launch
            await _build_ended(creating)
            if not creating.cancelled():
                creating.exception()
            raise
    try:
        info = await asyncio.shield(creating)
    except asyncio.CancelledError:
        # Cancelled (a subscriber restart, a shutdown): the lock is released only once the
        # build thread is done, so a resume never lists, destroys or rebuilds a lab that is
        # still being made.
        await _build_ended(creating)
        raise
    except RuntimeFault as exc:
        await _fail(state, scenario_id, f"lab could not be created: {exc}", {})
        return
    await mark_running(state, scenario_id, plan_name, template_id, info.hosts)


async def _undo_build(state: OrchestratorState, scenario_id: str,
                      creating: asyncio.Future[LabInfo], cause: Exception) -> None:
    """Wait for a build whose launching move could not be audited or announced, and
    destroy what it made."""
    await _build_ended(creating)
    if creating.cancelled():
        return
    error = creating.exception()
    if error is not None:
        log.warning("scenario %s: lab build failed too (%s) after: %s", scenario_id,
                    error, cause)
    try:
        await state.blocking(state.runtime.destroy, scenario_id)
    except LabNotFound:
        pass
    except Exception as exc:
        log.warning("scenario %s: lab left after a failed launch could not be destroyed "
                    "(%s); the reaper's resume tears it down", scenario_id, exc)


async def _build_ended(creating: asyncio.Future[LabInfo]) -> None:
    """Wait until a build has ended, through cancellations (re-raised once it has): its
    thread runs on whatever happens to the task that started it, and the scenario's lock
    must be held until then. At most BUILD_SETTLE_S once cancelled, so a subscriber
    restart or a shutdown stays bounded by a build that hangs (the reaper's resume, which
    takes the lock, then meets that lab)."""
    cancelled_at: float | None = None
    while not creating.done():
        if cancelled_at is not None and time.monotonic() - cancelled_at >= BUILD_SETTLE_S:
            log.warning("a cancelled lab build still runs after %.0f s; its scenario's lock "
                        "is released", BUILD_SETTLE_S)
            break
        try:
            await asyncio.wait({creating}, timeout=1.0 if cancelled_at is not None else None)
        except asyncio.CancelledError:
            if cancelled_at is None:
                cancelled_at = time.monotonic()
    if cancelled_at is not None:
        raise asyncio.CancelledError


def _audit_launch_if_missing(state: OrchestratorState, scenario_id: str) -> None:
    """A launch whose audit write failed (a full disk) is stored but not in the scenario's
    log: its entry is written before the lab is built again, so the log still shows every
    move (late: stamped when written, so the log's times stay in order)."""
    log_ = scenario_log(state.settings.storage_root, scenario_id)
    for line in log_.read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a torn line (a crash mid-write) is not the entry
            continue
        if isinstance(entry, dict) and entry.get("event") == "scenario.state" \
                and isinstance(entry.get("data"), dict) \
                and entry["data"].get("to") == states.LAUNCHING:
            return
    with state.ctx.db.read() as sess:
        moved = sess.scalars(
            select(ScenarioTransition)
            .where(ScenarioTransition.scenario_id == scenario_id,
                   ScenarioTransition.to_state == states.LAUNCHING)
            .order_by(ScenarioTransition.id.desc()).limit(1)).first()
        row = sess.get(Scenario, scenario_id)
        if moved is None or row is None:
            return
        transition = Transition(scenario_id, moved.from_state or states.PENDING,
                                moved.to_state, moved.reason or "", datetime.now(UTC),
                                row.tenant_id, row.subject, row.track)
    audit_move(state.settings.storage_root, transition)


async def resume_launch(state: OrchestratorState, scenario_id: str) -> str:
    """Finish a scenario left in ``launching`` by a crash: a complete lab is marked running;
    a half-built one is torn down and built again from the accepted spawn (same values);
    after MAX_LAUNCH_ATTEMPTS the scenario fails with the reason. Returns the state."""
    async with state.lock_for(scenario_id):
        row = await state.blocking(load, state.ctx.db, scenario_id)
        if row.state != states.LAUNCHING:
            return row.state
        try:  # whichever way it goes on, the log shows the move to launching first
            await state.blocking(_audit_launch_if_missing, state, scenario_id)
        except Exception as exc:  # never what keeps a lab from being finished
            log.warning("scenario %s: its launching entry could not be written to the audit "
                        "log: %s", scenario_id, exc)
        found = {i.lab_id: i for i in await state.blocking(state.runtime.list)}
        info = found.get(scenario_id)
        if info is not None and info.state == "running":
            await mark_running(state, scenario_id, row.plan, row.template_id, info.hosts)
            return states.RUNNING
        if info is not None:
            try:
                await state.blocking(state.runtime.destroy, scenario_id)
            except RuntimeFault as exc:
                await _fail(state, scenario_id, f"half-built lab could not be removed: {exc}",
                            {})
                return states.FAILED
        attempts = int(row.details.get("launch_attempts", 1)) + 1
        if attempts > MAX_LAUNCH_ATTEMPTS:
            await _fail(state, scenario_id, f"lab could not be built in {MAX_LAUNCH_ATTEMPTS} "
                        "attempts (interrupted)", {"launch_attempts": attempts - 1})
            return states.FAILED
        try:
            loaded = state.registry.get(row.template_id)
        except UnknownTemplate:
            await _fail(state, scenario_id, "template is not loaded", {})
            return states.FAILED
        await state.blocking(
            lambda: set_details(state.ctx.db, state.settings.storage_root, scenario_id,
                                {"launch_attempts": attempts},
                                f"launch interrupted; building the lab again (attempt {attempts})"))
        rendered = render(loaded.template, row.details.get("variables", {}))
        await _build(state, lab_spec(scenario_id, rendered), row.plan, row.template_id)
        return (await state.blocking(load, state.ctx.db, scenario_id)).state


async def mark_running(state: OrchestratorState, scenario_id: str, plan_name: str,
                       template_id: str, hosts: dict[str, dict[str, str]]) -> None:
    """launching → running with its deadline: the template's timeout capped by the plan."""
    minutes = state.registry.get(template_id).template.spec.limits.timeout_minutes
    plan = state.catalog.get(plan_name)
    if plan is not None:
        minutes = min(minutes, plan.max_lab_minutes)
    deadline = datetime.now(UTC) + timedelta(minutes=minutes)
    running = await state.blocking(
        lambda: move(state.ctx.db, state.settings.storage_root, scenario_id, states.RUNNING,
                     "lab running", updates={"expires_at": deadline},
                     details={"hosts": hosts, "started_at": datetime.now(UTC).isoformat()})
    )
    await state.announce(running, expires_at=deadline.strftime("%Y-%m-%dT%H:%M:%SZ"))
    crash_point("orchestrator.running")
