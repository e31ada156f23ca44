"""Resuming a launch left in ``launching``: by a crash (the reaper), or by a first attempt
that failed after the move (its spawn event, redelivered)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select

from forge.audit.log import scenario_log
from forge.bus import RetryLater
from forge.lifecycle import states
from forge.lifecycle.ending import ending_of
from forge.lifecycle.store import ScenarioRow, Transition, audit_move, load, set_details
from forge.runtime.base import RuntimeFault, ServicesNotReady
from forge.services.orchestrator.grade_lab import end_without_grading, teardown_lab
from forge.services.orchestrator.labspec import lab_spec
from forge.services.orchestrator.launch_build import (
    build_lab,
    fail_on_error,
    fail_scenario,
    mark_running,
)
from forge.services.orchestrator.node import NOT_HERE_DELAY_S, lab_memory_mb
from forge.services.orchestrator.state import OrchestratorState
from forge.store.busy import disk_out_of_room
from forge.store.models import Scenario, ScenarioTransition
from forge.store.timestamps import aware
from forge.templates.problems import TemplateError, UnknownTemplate
from forge.templates.variables import render

log = logging.getLogger("forge.orchestrator.launch")
MAX_LAUNCH_ATTEMPTS = 3


async def resume_redelivered(state: OrchestratorState, scenario_id: str,
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



def _launching_move(state: OrchestratorState, scenario_id: str) -> Transition | None:
    """The scenario's last move to launching as the store has it (its reason, its time)."""
    with state.ctx.db.read() as sess:
        moved = sess.scalars(
            select(ScenarioTransition)
            .where(ScenarioTransition.scenario_id == scenario_id,
                   ScenarioTransition.to_state == states.LAUNCHING)
            .order_by(ScenarioTransition.id.desc()).limit(1)).first()
        row = sess.get(Scenario, scenario_id)
        if moved is None or row is None:
            return None
        return Transition(scenario_id, moved.from_state or states.PENDING, moved.to_state,
                          moved.reason or "", aware(moved.at).astimezone(UTC), row.tenant_id,
                          row.subject, row.track)


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
    launched = _launching_move(state, scenario_id)
    if launched is not None:
        audit_move(state.settings.storage_root, replace(launched, at=datetime.now(UTC)))


async def _announce_launching(state: OrchestratorState, scenario_id: str) -> None:
    """Announce the move to launching again before the launch goes on, so that the bus
    shows pending → launching → running even when a first attempt's announce met a NATS
    outage, or a crash came before it. It goes out as the first did (same message id, same
    body, its time in UTC whatever zone the store answers in), so JetStream keeps one copy
    when the first was stored within the stream's duplicate window; a resume later than
    that (or a reaper's later attempt) adds a copy, as at-least-once delivery allows. Best
    effort: a failure is logged, never what stops the resume (the store is the truth), and
    a resume during an outage may still leave the bus without its launching event."""
    try:
        launched = await state.blocking(_launching_move, state, scenario_id)
        if launched is not None:
            await state.announce(launched)
    except Exception as exc:
        log.warning("scenario %s: its move to launching could not be announced again: %s",
                    scenario_id, exc)


async def resume_launch(state: OrchestratorState, scenario_id: str) -> str:
    """Finish a scenario left in ``launching`` by a crash: a complete lab is marked running;
    a half-built one is torn down and built again from the accepted spawn (same values);
    after MAX_LAUNCH_ATTEMPTS the scenario fails with the reason. Returns the state.
    One whose end (a delete) was under way when the node stopped gets that end instead
    (`lifecycle.ending`): never rebuilt for a learner who deleted it."""
    ending = await state.blocking(ending_of, state.settings.storage_root, scenario_id)
    if ending is not None:
        return await end_without_grading(state, scenario_id, *ending)
    async with state.lock_for(scenario_id):
        row = await state.read(load, state.ctx.db, scenario_id)
        if row.state != states.LAUNCHING:
            return row.state
        try:  # whichever way it goes on, the log shows the move to launching first
            await state.blocking(_audit_launch_if_missing, state, scenario_id)
        except Exception as exc:  # never what keeps a lab from being finished
            log.warning("scenario %s: its launching entry could not be written to the audit "
                        "log: %s", scenario_id, exc)
        await _announce_launching(state, scenario_id)  # and the bus too
        found = {i.lab_id: i for i in await state.blocking(state.runtime.list)}
        info = found.get(scenario_id)
        if info is not None and info.state == "running":
            # Built before the stop, perhaps still waiting for its services (a create
            # returns once they listen): running only once they do, as for a fresh build.
            if not await _services_ready(state, row):
                return states.FAILED
            await mark_running(state, scenario_id, row.plan, row.template_id, info.hosts)
            return states.RUNNING
        if info is not None:
            try:
                await state.blocking(state.runtime.destroy, scenario_id)
            except RuntimeFault as exc:
                await fail_on_error(state, scenario_id, "half-built lab could not be removed",
                                    exc)
                return states.FAILED
        attempts = int(row.details.get("launch_attempts", 1)) + 1
        if attempts > MAX_LAUNCH_ATTEMPTS:
            await fail_scenario(state, scenario_id,
                                f"lab could not be built in {MAX_LAUNCH_ATTEMPTS} attempts "
                                "(interrupted)", {"launch_attempts": attempts - 1})
            return states.FAILED
        try:
            loaded = state.registry.get(row.template_id)
        except UnknownTemplate:
            await fail_scenario(state, scenario_id, "template is not loaded", {})
            return states.FAILED
        # The note first, then the count: on a full disk the note fails with nothing
        # stored (a full disk must not use up a launch's attempts and fail it as soon as
        # room is made), and the reaper resumes it once there is room.
        try:
            await state.blocking(
                lambda: scenario_log(state.settings.storage_root, scenario_id).append(
                    "scenario.note", {"note": f"launch interrupted; building the lab again "
                                              f"(attempt {attempts})"}))
        except OSError as exc:
            if not disk_out_of_room(exc):
                raise
            log.warning("scenario %s: its launch waits for room on the storage (%s); it is "
                        "resumed once there is room", scenario_id, exc.strerror)
            return states.LAUNCHING
        await state.blocking(
            lambda: set_details(state.ctx.db, state.settings.storage_root, scenario_id,
                                {"launch_attempts": attempts}, None))
        rendered = render(loaded.template, row.details.get("variables", {}))

        async def put_off() -> None:
            # A shutdown came first, or cut the build short (what it built is removed):
            # no attempt (three shutdowns during bursts must not fail a lab that never
            # got to be built).
            await state.blocking(
                lambda: set_details(state.ctx.db, state.settings.storage_root, scenario_id,
                                    {"launch_attempts": attempts - 1},
                                    "launch put off by a shutdown; the next start builds it"))

        await build_lab(state, lab_spec(scenario_id, rendered, loaded.template), row.plan,
                        row.template_id, stopped=put_off)
        return (await state.read(load, state.ctx.db, scenario_id)).state


async def _services_ready(state: OrchestratorState, row: ScenarioRow) -> bool:
    """Whether the built lab of launching ``row`` has its services listening (waiting for
    them as its create would); when they never do, the lab is destroyed and the scenario
    failed with the reason, as a create's failure does. A template no longer loaded, or one
    the scenario's values no longer render: the lab is taken as it is (its services cannot
    be named; retrying would keep the lab launching for ever)."""
    scenario_id = row.scenario_id
    try:
        loaded = state.registry.get(row.template_id)
        rendered = render(loaded.template, row.details.get("variables", {}))
    except (UnknownTemplate, TemplateError) as exc:
        log.warning("scenario %s: its services are not waited for (%s)", scenario_id,
                    type(exc).__name__)
        return True
    spec = lab_spec(scenario_id, rendered, loaded.template)
    try:
        await state.blocking(state.runtime.wait_ready, spec)
    except ServicesNotReady as exc:
        await state.blocking(teardown_lab, state, scenario_id)
        await fail_on_error(state, scenario_id, "lab could not be created", exc)
        return False
    return True
