"""Operator actions that get any scenario out of any state: fail, regrade, destroy.

Each is idempotent on a finished scenario, takes the scenario's lock (so it never races
the consumer, the reaper or another action), and leaves an audit entry naming the
operator action and its reason in the scenario's hash-chained log.
"""

from __future__ import annotations

from forge.audit.log import scenario_log
from forge.lifecycle import states
from forge.lifecycle.ending import forget_ending, record_ending
from forge.lifecycle.store import load, move
from forge.services.orchestrator.grade_lab import complete, resume_grading, teardown_lab
from forge.services.orchestrator.state import OrchestratorState


def _audit(state: OrchestratorState, scenario_id: str, action: str, reason: str) -> None:
    scenario_log(state.settings.storage_root, scenario_id).append(
        "operator.action", {"action": action, "reason": reason[:2000]})


async def fail(state: OrchestratorState, scenario_id: str, reason: str) -> str:
    """End a scenario that is not finished as ``failed`` (its lab torn down, its slot
    freed through the announced event); a finished one is left as it is."""
    async with state.lock_for(scenario_id):
        row = await state.read(load, state.ctx.db, scenario_id)
        if row.state in states.TERMINAL:
            return row.state
        await state.blocking(_audit, state, scenario_id, "fail", reason)
        await state.blocking(teardown_lab, state, scenario_id)
        failed = await state.blocking(
            lambda: move(state.ctx.db, state.settings.storage_root, scenario_id,
                         states.FAILED, f"failed by an operator: {reason}"))
        await state.announce_end(failed)
        return states.FAILED


async def regrade(state: OrchestratorState, scenario_id: str, reason: str) -> str:
    """Grade now: a running lab is graded; one stuck in ``grading`` is resumed (published,
    graded again, or failed when its lab is gone). A finished scenario is left as it is."""
    row = await state.read(load, state.ctx.db, scenario_id)
    if row.state in states.TERMINAL:
        return row.state
    await state.blocking(_audit, state, scenario_id, "regrade", reason)
    if row.state == states.GRADING:
        async with state.lock_for(scenario_id):
            row = await state.read(load, state.ctx.db, scenario_id)
            if row.state != states.GRADING:
                return row.state
            return await resume_grading(state, row)
    return await complete(state, scenario_id, "operator")


async def destroy(state: OrchestratorState, scenario_id: str, reason: str) -> str:
    """Tear the lab down now, whatever the state. A live scenario ends ``deleted`` (or
    ``failed`` from ``grading``, which has no way to ``deleted``); a finished one keeps
    its state and only loses any lab left behind."""
    async with state.lock_for(scenario_id):
        row = await state.read(load, state.ctx.db, scenario_id)
        await state.blocking(_audit, state, scenario_id, "destroy", reason)
        root = state.settings.storage_root
        target = states.FAILED if row.state == states.GRADING else states.DELETED
        why = f"destroyed by an operator: {reason}"
        if row.state in (states.LAUNCHING, states.RUNNING):  # finished by a restart if cut
            await state.blocking(record_ending, root, scenario_id, target, why)
            state.ends_under_way.add(scenario_id)  # the reaper's, should the store fail
        await state.blocking(teardown_lab, state, scenario_id)
        if row.state in states.TERMINAL:
            return row.state
        moved = await state.blocking(
            lambda: move(state.ctx.db, root, scenario_id, target, why))
        await state.blocking(forget_ending, root, scenario_id)
        state.ends_under_way.discard(scenario_id)
        await state.announce_end(moved)
        return target
