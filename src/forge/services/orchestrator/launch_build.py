"""Building the lab of a ``launching`` scenario and marking it running, or failing it.

Shared by the first launch (`launcher`) and its resume (`launch_resume`): both end the same
way, so neither imports the other for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from forge.faults import crash_point
from forge.lifecycle import states
from forge.lifecycle.store import Transition, audit_move, move, record_move
from forge.lifecycle.wanted_delete import RunningDeadline
from forge.runtime.base import (
    BuildsStopped,
    LabInfo,
    LabNotFound,
    LabSpec,
    RuntimeFault,
    StoppedMidway,
)
from forge.services.orchestrator.failure_reason import failure
from forge.services.orchestrator.state import OrchestratorState

log = logging.getLogger("forge.orchestrator.launch")
BUILD_SETTLE_S = 30.0  # how long a cancelled launch waits for its build thread


async def fail_scenario(state: OrchestratorState, scenario_id: str, reason: str,
                        details: dict[str, Any]) -> None:
    """Move a scenario to failed with the reason and announce it."""
    transition = await state.blocking(
        lambda: move(state.ctx.db, state.settings.storage_root, scenario_id, states.FAILED,
                     reason, details=details)
    )
    await state.announce(transition)


async def fail_on_error(state: OrchestratorState, scenario_id: str, what: str,
                        exc: BaseException) -> None:
    """``fail_scenario`` on an error: the learner reads ``what`` (with the error's text only
    when it is written for them, ``failure_reason``); the log and the operator's view of the
    scenario keep the error."""
    reason, details = failure(scenario_id, what, exc)
    await fail_scenario(state, scenario_id, reason, details)


async def build_lab(state: OrchestratorState, spec: LabSpec, plan_name: str,
                    template_id: str, *, launched: Transition | None = None,
                    stopped: Callable[[], Awaitable[None]] | None = None) -> None:
    """Create the lab of a ``launching`` scenario and mark it running, or fail it.

    A shutdown that stops the build before it began (``BuildsStopped``) leaves the scenario
    ``launching`` for the next start, and awaits ``stopped()``, also when this task was
    cancelled meanwhile (a shutdown cancels the launches it waits for).

    ``launched``: the move to launching, recorded in the store but not yet in the audit
    log. The lab is then built while that entry is written (an fsync) and announced, not
    after: both are waits, each a few milliseconds of a pooled spawn's ~10. Both finish
    before the scenario's next move (the log stays in order), and the scenario's lock is
    held until the build ends (a retry never meets a half-built lab), on cancellation too
    (a subscriber restart, a shutdown) for up to BUILD_SETTLE_S. A failed audit or
    announce destroys the lab again, as if the move had failed."""
    scenario_id = spec.lab_id
    creating = asyncio.ensure_future(state.building(state.runtime.create, spec))
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
        try:
            await _build_ended(creating)
        finally:
            if stopped is not None and _stopped_before_building(creating):
                await _note_stopped(stopped, scenario_id)
        raise
    except (BuildsStopped, StoppedMidway) as exc:
        # A shutdown came before this lab's turn to build, or cut its build short (nothing
        # of it is left): not the lab's fault. The scenario stays launching and the next
        # start's resume (or the reaper's) builds it, as after a crash.
        log.info("scenario %s: shutting down before its lab was built (%s); a restart "
                 "resumes the launch", scenario_id, exc)
        if stopped is not None:
            await _note_stopped(stopped, scenario_id)
        return
    except RuntimeFault as exc:
        await fail_on_error(state, scenario_id, "lab could not be created", exc)
        return
    await mark_running(state, scenario_id, plan_name, template_id, info.hosts)


async def _note_stopped(stopped: Callable[[], Awaitable[None]], scenario_id: str) -> None:
    """Await ``stopped()`` through cancellations (shielded: it goes on if the task is
    cancelled again); its own error is logged, never raised in place of a cancellation."""
    try:
        await asyncio.shield(stopped())
    except Exception as exc:
        log.warning("scenario %s: the launch put off by the shutdown could not be noted: %s",
                    scenario_id, exc)


def _stopped_before_building(creating: asyncio.Future[LabInfo]) -> bool:
    """Whether a finished create was refused by a shutdown before it built anything."""
    return (creating.done() and not creating.cancelled()
            and isinstance(creating.exception(), BuildsStopped))


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



async def mark_running(state: OrchestratorState, scenario_id: str, plan_name: str,
                       template_id: str, hosts: dict[str, dict[str, str]]) -> None:
    """launching → running with its deadline: the template's timeout capped by the plan."""
    minutes = state.registry.get(template_id).template.spec.limits.timeout_minutes
    plan = state.catalog.get(plan_name)
    if plan is not None:
        minutes = min(minutes, plan.max_lab_minutes)
    # Now when a delete was kept while it launched, judged in the move's own transaction.
    deadline = RunningDeadline(datetime.now(UTC) + timedelta(minutes=minutes))

    def to_running() -> Transition:
        moved = record_move(state.ctx.db, scenario_id, states.RUNNING, "lab running",
                            details={"hosts": hosts, "started_at": datetime.now(UTC).isoformat()},
                            with_move=deadline)
        audit_move(state.settings.storage_root, moved)
        return moved

    running = await state.blocking(to_running)
    await state.announce(running, expires_at=deadline.deadline.strftime("%Y-%m-%dT%H:%M:%SZ"))
    crash_point("orchestrator.running")
