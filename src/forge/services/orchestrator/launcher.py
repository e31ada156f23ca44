"""forge.spawn.requested → a running lab (or a failed scenario with its reasons)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from forge.bus import Event, Reject, RetryLater
from forge.bus.contracts import ContractError, SpawnRequestedV1, decode_as
from forge.disk_room import short_of_room
from forge.lifecycle import states
from forge.lifecycle.store import ScenarioNotFound, ScenarioRow, load, record_move
from forge.policy.decision import PolicyError, PolicyUnavailable
from forge.policy.inputs import build_training_input
from forge.services.orchestrator.admission import AdmissionRefused, Admitted, verify_spawn_event
from forge.services.orchestrator.failure_reason import RECORDED, failure
from forge.services.orchestrator.labspec import lab_spec
from forge.services.orchestrator.launch_build import build_lab, fail_on_error, fail_scenario
from forge.services.orchestrator.launch_resume import resume_redelivered
from forge.services.orchestrator.node import NOT_HERE_DELAY_S, ROOM_NEEDED_BYTES, lab_memory_mb
from forge.services.orchestrator.state import OrchestratorState
from forge.store.busy import disk_out_of_room
from forge.store.consumed_tokens import SqlReplayStore
from forge.store.models import Scenario
from forge.templates.problems import TemplateError, UnknownTemplate
from forge.templates.variables import generate_values, render
from forge.tokens import TokenReplayed
from forge.tokens.replay import MAX_JTI_CHARS
from forge_verify.score import SCENARIO_ID_RE

log = logging.getLogger("forge.orchestrator.launch")
POLICY_RETRY_S = 2.0


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
            row = await state.read(load, state.ctx.db, scenario_id)
        except ScenarioNotFound:
            return
        own = (event.data.get("tenant_id") == row.tenant_id
               and event.data.get("subject") == row.subject)
        if own and row.state == states.PENDING:
            await fail_scenario(state, scenario_id, f"spawn event refused: {exc.code}",
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
            row = await state.read(load, state.ctx.db, scenario_id)
        except ScenarioNotFound:
            row = None
        if row is not None and row.state != states.PENDING:
            log.info("spawn event for %s redelivered; already %s", scenario_id, row.state)
            if row.state != states.LAUNCHING or not state.holds(row.node_id):
                return  # another node's launching lab is its reaper's to resume
            template_id = row.template_id
        else:
            try:
                await _admit_and_launch(state, spawn, row)
            except OSError as exc:
                if not disk_out_of_room(exc):
                    raise
                # A full storage disk (the node fetched it as the disk filled): back to the
                # queue for another node or for room, never used up as a failed attempt.
                raise RetryLater(NOT_HERE_DELAY_S, f"lab node storage is out of room "
                                                   f"({exc.strerror})") from None
            return
    # An attempt here failed after the move to launching (its announce met a NATS outage,
    # its audit write a full disk): the event came back, so the launch resumes now instead
    # of waiting STUCK_LAUNCHING for the reaper. No lock is held in between that another
    # attempt could use: resume_launch checks the state again under it.
    await resume_redelivered(state, scenario_id, template_id)


async def _admit_and_launch(state: OrchestratorState, spawn: SpawnRequestedV1,
                            row: ScenarioRow | None) -> None:
    """A pending (or not yet stored) scenario: verify its tokens, hold room, launch."""
    scenario_id = spawn.scenario_id
    try:
        admitted = verify_spawn_event(state.settings, spawn)
    except AdmissionRefused as exc:
        if row is None:
            raise Reject(f"{exc.code}: {exc.message}") from None
        await _refuse(state, scenario_id, exc.code, exc.message)
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


def _consume_sat(conn: Connection, jti: str, expires: datetime,
                 details: dict[str, Any]) -> None:
    """Consume the spawn's SAT on ``conn`` (the move to launching's transaction), or raise
    TokenReplayed (rolling that move back): used before, or no usable jti. A row an earlier
    version marked ``sat_consuming`` (mark, consume, then move: three commits) found its
    own jti consumed after a crash between them: not a replay, it moves on."""
    if details.get("sat_consuming") == jti:
        return
    if not jti or len(jti) > MAX_JTI_CHARS or not SqlReplayStore.consume_on(
            conn, jti, "SAT", expires):
        raise TokenReplayed("SAT token was already used or has no usable jti")


async def _refuse(state: OrchestratorState, scenario_id: str, code: str, error: str) -> None:
    """Fail a spawn whose tokens this node refuses. The learner reads that it was refused;
    the error (which names a token and its secret, e.g. a SAT_HMAC_SECRET that differs from
    spawn_service's) goes to the log and the operator's view, where the fix is made."""
    log.warning("scenario %s refused: %s (%s)", scenario_id, error, code)
    await fail_scenario(state, scenario_id, f"the lab request was refused: {RECORDED}",
                        {"refused": code, "error": error})


async def _launch(state: OrchestratorState, admitted: Admitted) -> None:
    sat, et = admitted.sat, admitted.et
    scenario_id = admitted.scenario_id
    try:
        loaded = state.registry.get(str(sat["template_id"]))
    except UnknownTemplate:
        await fail_scenario(state, scenario_id, "template is not loaded",
                            {"refused": "unknown_template"})
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
        reason, details = failure(scenario_id, "policy evaluation failed", exc)
        await fail_scenario(state, scenario_id, reason, {
            **details, "policy": {"error": str(exc), "input": policy_input}})
        return
    decision = gates.combined
    # Every decision is recorded, a cache answer too (marked `cached`).
    decision_record = {"allow": decision.allow, "reasons": decision.reasons,
                       "policy_hash": decision.policy_hash, "cached": decision.cached,
                       "input": policy_input}
    if not decision.allow:
        await fail_scenario(state, scenario_id,
                            "policy denied: " + "; ".join(decision.reasons),
                            {"policy": decision_record})
        return
    expires = datetime.fromtimestamp(int(sat["exp"]), UTC)
    values = generate_values(loaded.template)
    # Rendered before the move: a pooled lab is claimed within ~10 ms of it.
    try:
        spec = lab_spec(scenario_id, render(loaded.template, values), loaded.template)
    except (TemplateError, ValueError) as exc:  # fails now, as a build would have
        await fail_on_error(state, scenario_id, "lab could not be created", exc)
        return
    # The storage root filled since the fetch (the gate let it in with room): back to the
    # queue, pending, for another node or for room, before the move makes the lab this
    # node's (its audit entry would then fail on the full disk, leaving it launching here).
    node = state.node
    if (node.storage_short() if node is not None
            else short_of_room(state.settings.storage_root, ROOM_NEEDED_BYTES)):
        raise RetryLater(NOT_HERE_DELAY_S, "lab node storage is out of room")
    # The SAT is consumed in the move's own transaction: both or neither, so a crash leaves
    # a pending scenario whose redelivered event starts over (or the reaper fails it), never
    # a used SAT behind a pending row.
    jti = str(sat["jti"])
    try:
        launching = await state.blocking(
            lambda: record_move(
                state.ctx.db, scenario_id, states.LAUNCHING, "policy allowed",
                updates={"template_sha256": loaded.sha256, **_holder(state)},
                details={"policy": decision_record, "variables": values,
                         "tokens": {"sat": admitted.sat_token, "et": admitted.et_token}},
                with_move=lambda conn, before: _consume_sat(conn, jti, expires, before)))
    except TokenReplayed:
        await _refuse(state, scenario_id, "sat_replayed", "SAT was already used")
        return
    await build_lab(state, spec, str(et["plan"]), str(sat["template_id"]), launched=launching)


