"""Grading and completion: run the checks, keep the evidence, publish, tear the lab down.

Completion is idempotent: a second request for a scenario already grading or completed is a
no-op. The completion payload is written to disk before it is published, so a publish that
fails (bus outage) is retried from the same results, never from a second grading.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from forge.audit.log import scenario_log
from forge.bus import BusUnavailable
from forge.bus.contracts import (
    SUBMITTED,
    ContractError,
    ScenarioCompletedV1,
    decode_as,
    parse,
    payload,
    publish_event,
)
from forge.bus.subjects import SCENARIO_COMPLETED
from forge.durable import replace_file
from forge.evidence.artifact_store import COMPLETION_FILE, EVIDENCE_DIR, discard_raw_evidence
from forge.faults import crash_point
from forge.grading.runner import grade
from forge.lifecycle import states
from forge.lifecycle.ending import forget_ending, record_ending
from forge.lifecycle.states import IllegalTransition
from forge.lifecycle.store import ScenarioRow, load, move
from forge.runtime.base import LabNotFound, RuntimeFault, StoppedMidway
from forge.runtime.recording import discard_recordings, read_recordings
from forge.scenario_paths import scenario_dir as scenario_folder
from forge.services.orchestrator.evidence_ship import (
    PACK_FILE,
    PackTooLarge,
    build_pack,
    encoded_size,
    transport_fields,
    upload_pack,
)
from forge.services.orchestrator.failure_reason import failure
from forge.services.orchestrator.graded_once import evidence_hashes, keep_grading, kept_grading
from forge.services.orchestrator.restored_store import complete_as_logged, logged_completion
from forge.services.orchestrator.state import OrchestratorState
from forge.services.orchestrator.terminal import close_terminals
from forge.store.busy import disk_out_of_room, store_error_text, store_out_of_room
from forge.store.timestamps import aware
from forge.templates.variables import render, values_digest
from forge_verify.score import CheckResult

log = logging.getLogger("forge.orchestrator.complete")
EVENT_TEXT_CAP = 16 * 1024


def scenario_dir(state: OrchestratorState, scenario_id: str) -> Path:
    """The scenario's folder on this node (`forge.scenario_paths`)."""
    return scenario_folder(state.settings.storage_root, scenario_id)


def _encoded_size(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


def _capped(text: str) -> str | None:
    """The longest prefix of `text` whose JSON encoding fits EVENT_TEXT_CAP, or None if all
    of it does. Measured encoded: a learner's control bytes grow sixfold as `\\u0000`."""
    if _encoded_size(text) <= EVENT_TEXT_CAP:
        return None
    low, high = 0, min(len(text), EVENT_TEXT_CAP)
    while low < high:
        mid = (low + high + 1) // 2
        if _encoded_size(text[:mid]) <= EVENT_TEXT_CAP:
            low = mid
        else:
            high = mid - 1
    return text[:low]


def _result_dict(result: CheckResult) -> dict[str, Any]:
    record = asdict(result)
    for stream in ("stdout", "stderr"):
        capped = _capped(record[stream]["text"])
        if capped is not None:
            record[stream]["text"] = capped
            record[stream]["truncated"] = True
    return record


def _digests(files: dict[str, bytes]) -> dict[str, str]:
    """sha256 of each terminal recording, written into the audit log's completion entry."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}


def build_payload(row: ScenarioRow, results: list[CheckResult], reason: str,
                  evidence: dict[str, str], completed_at: datetime,
                  transport: dict[str, Any] | None = None) -> ScenarioCompletedV1:
    """The forge.scenario.completed event (what the scoreboard scores from); `ContractError`
    when the row cannot make one (e.g. no tokens recorded). `transport` adds the fields that
    carry the evidence pack (`evidence_ship.transport_fields`)."""
    details = row.details
    return parse(ScenarioCompletedV1, {
        "scenario_id": row.scenario_id,
        "run_id": f"{row.scenario_id}.1",
        "track": row.track,
        "template": {"name": row.template_id, "sha256": row.template_sha256},
        "tenant_id": row.tenant_id,
        "subject": row.subject,
        "plan": row.plan,
        "retention_days": row.retention_days,
        "completion_reason": reason,
        "started_at": details.get("started_at"),
        "completed_at": completed_at.isoformat(),
        "sat": details.get("tokens", {}).get("sat"),
        "et": details.get("tokens", {}).get("et"),
        "variables": details.get("variables", {}),
        "policy": details.get("policy", {}),
        "results": [_result_dict(r) for r in results],
        "evidence": evidence,
        **(transport or {}),
    })


def completion_time(started_at: object, now: datetime) -> datetime:
    """When the lab completed: ``now``, or its start if the wall clock stepped back past
    it since (NTP correcting a fast clock, a VM restored from a snapshot). The scoreboard,
    and every verifier, refuse a completion that ends before it started, so that step
    would lose the learner's verdict for good (crash drill CK)."""
    try:
        started = datetime.fromisoformat(str(started_at))
    except ValueError:
        return now  # none recorded: the scoreboard names what is missing
    if started.tzinfo is None:
        return now
    return max(now, started)


def graded_reason(reason: str, expires_at: datetime | None,
                  submitted_at: datetime | None) -> str:
    """The completion reason a grading records: a learner's submit made after the lab's
    end time (one that reached the node before the reaper's next round) is not an on-time
    submit but the lab's expiry, as the reaper would have recorded it. Judged by when the
    submit was made (``submitted_at``; now without it): a submit made in time and queued
    behind other gradings stays ``submitted``."""
    if reason != SUBMITTED or expires_at is None:
        return reason
    made = submitted_at if submitted_at is not None else datetime.now(UTC)
    return "expired" if made > aware(expires_at) else reason


def _grade_and_store(state: OrchestratorState, scenario_id: str,
                     reason: str) -> ScenarioCompletedV1:
    row = load(state.ctx.db, scenario_id)
    folder = scenario_dir(state, scenario_id)
    evidence_dir = folder / EVIDENCE_DIR
    casts = read_recordings(state.settings.storage_root, scenario_id)
    slog = scenario_log(state.settings.storage_root, scenario_id)
    # A grading cut short after its audit entry is finished as recorded, not run again.
    event = kept_grading(folder, slog)
    if event is None:
        loaded = state.registry.get(row.template_id)
        rendered = render(loaded.template, row.details.get("variables", {}))
        results = grade(state.runtime, scenario_id, rendered, evidence_dir)
        completed_at = completion_time(row.details.get("started_at"), datetime.now(UTC))
        event = build_payload(row, results, reason, evidence_hashes(evidence_dir), completed_at)
        keep_grading(folder, event)
        slog.append(
            "scenario.completed",
            {"reason": event.completion_reason, "checks": len(results),
             "passed": sum(r.passed for r in results), "evidence": event.evidence,
             "variables_sha256": values_digest(event.variables),
             **({"recordings": _digests(casts)} if casts else {})},
        )
    # The audit log through this entry and the outputs travel with it (inline or Object Store).
    audit = slog.read_through("scenario.completed") or b""
    pack = build_pack(scenario_id, audit, evidence_dir, casts)
    transport = transport_fields(encoded_size(event), scenario_id, pack)
    # Both files are the orchestrator's alone (replace_file: 0600): they carry the lab's
    # variables (its answers), the learner's tokens and their terminal recordings.
    if "evidence_object" in transport:
        replace_file(folder / PACK_FILE, pack)
    event = parse(ScenarioCompletedV1, {**payload(event), **transport})
    replace_file(folder / COMPLETION_FILE, json.dumps(payload(event), sort_keys=True).encode())
    return event


def teardown_lab(state: OrchestratorState, scenario_id: str) -> None:
    # The recordings are in the stored completion by now (or the lab ends ungraded).
    discard_recordings(state.settings.storage_root, scenario_id)
    try:
        state.runtime.destroy(scenario_id)
    except LabNotFound:
        pass
    except RuntimeFault:
        log.exception("teardown of %s failed; reconciliation will retry", scenario_id)


async def publish_completion(state: OrchestratorState, scenario_id: str) -> str:
    """Publish the stored payload and finish the scenario; the scenario's state after:
    ``completed``, ``grading`` while the bus is down, or the final state it was moved to
    meanwhile by someone else, its result then discarded unpublished (``_moved_on``)."""
    if (ended := await _moved_on(state, scenario_id)) is not None:
        return ended
    path = scenario_dir(state, scenario_id) / COMPLETION_FILE
    try:
        event = decode_as(ScenarioCompletedV1, SCENARIO_COMPLETED,
                          await state.blocking(path.read_bytes))
    except ContractError as exc:
        # A stored result this version cannot read (e.g. written by an older one) must not
        # keep the scenario in grading, retried at every start: it fails with the reason.
        return await _fail_grading(state, scenario_id, "stored grading result unreadable", exc)
    try:
        if event.evidence_object is not None:
            await upload_pack(state, scenario_dir(state, scenario_id), event.evidence_object.name)
        await publish_event(state.publisher, event, msg_id=f"{scenario_id}-completed")
        await state.announce_ended(scenario_id, states.COMPLETED)
    except BusUnavailable:
        log.warning("completion of %s stored; publish will be retried", scenario_id)
        return states.GRADING
    crash_point("orchestrator.published")
    try:
        await state.blocking(
            lambda: move(state.ctx.db, state.settings.storage_root, scenario_id,
                         states.COMPLETED, f"graded ({event.completion_reason})",
                         expected=states.GRADING))
    except IllegalTransition:  # ended by someone else between the publish and now
        ended = await _moved_on(state, scenario_id)
        return ended if ended is not None else states.GRADING
    # The event (and its pack, inline or in the Object Store) is now JetStream's: scoring,
    # a reprocess and retention read it there, never this node's copy, which would
    # otherwise outlive the scenario's retention on a node with its own STORAGE_ROOT.
    await state.blocking(discard_raw_evidence, scenario_dir(state, scenario_id))
    return states.COMPLETED


async def _moved_on(state: OrchestratorState, scenario_id: str) -> str | None:
    """The final state a grading scenario was moved to by someone else while it was graded
    (the lease holder failed the labs of this node while it was cut off from the bus for
    longer than the grace period): its result is then not published, so the learner
    never holds a signed verdict for a scenario they were told failed, and its raw
    evidence is discarded. None while the scenario is still ``grading``."""
    row = await state.read(load, state.ctx.db, scenario_id)
    if row.state == states.GRADING:
        return None
    log.warning("scenario %s was moved to %s (%s) while it was graded: its result is not "
                "published", scenario_id, row.state, row.state_reason)
    await state.blocking(discard_raw_evidence, scenario_dir(state, scenario_id))
    return row.state


def _lab_exists(state: OrchestratorState, scenario_id: str) -> bool:
    # Not list(): it reads every live lab (each host's addresses and init), for one.
    return state.runtime.has_lab(scenario_id)


async def _fail_grading(state: OrchestratorState, scenario_id: str, what: str,
                        exc: BaseException | None = None) -> str:
    """Fail a scenario whose grading failed at ``what`` (on ``exc``: the learner reads what
    ``failure_reason`` shows of it; the log and the operator's view keep it)."""
    reason, details = (what, {}) if exc is None else failure(scenario_id, what, exc)
    await state.blocking(teardown_lab, state, scenario_id)
    if (ended := await _moved_on(state, scenario_id)) is not None:
        return ended  # failed meanwhile by someone else, with their reason
    failed = await state.blocking(
        lambda: move(state.ctx.db, state.settings.storage_root, scenario_id, states.FAILED,
                     reason, details=details)
    )
    # Never scored, so never reached by retention: the partial evidence goes now.
    await state.blocking(discard_raw_evidence, scenario_dir(state, scenario_id))
    await state.announce(failed)
    return states.FAILED


async def _grade_and_publish(state: OrchestratorState, scenario_id: str, reason: str) -> str:
    """Grade a scenario already in ``grading``, store, tear down, publish."""
    try:
        await state.blocking(_grade_and_store, state, scenario_id, reason)
    except StoppedMidway as exc:
        # The service is stopping: no result, and none of it is the learner's. The
        # scenario stays in grading with its lab; the next start (or the reaper) grades it.
        log.warning("scenario %s: grading cut short by a stop (%s); it stays in grading and "
                    "is graded again", scenario_id, exc)
        return states.GRADING
    except OSError as exc:
        if not disk_out_of_room(exc):
            return await _fail_grading(state, scenario_id, "grading failed", exc)
        # A full disk passes once room is made, like a stop: the lab (the learner's work)
        # is kept and the scenario stays in grading; the reaper grades it again.
        log.warning("scenario %s: grading stopped, the storage is out of room (%s); the lab "
                    "is kept and graded again once there is room", scenario_id,
                    exc.strerror)
        return states.GRADING
    except DBAPIError as exc:
        if not store_out_of_room(exc):
            raise
        log.warning("scenario %s: grading stopped, the store is out of room (%s); the lab "
                    "is kept and graded again once there is room", scenario_id,
                    store_error_text(exc))
        return states.GRADING
    except LabNotFound as exc:
        # A host of the lab is gone (its processes died with the machine: a power cut): the
        # lab was lost, as when none of it is left (`resume_grading`), not a grading fault.
        return await _fail_grading(state, scenario_id, "the lab was lost during grading", exc)
    except (RuntimeFault, ContractError, PackTooLarge) as exc:
        return await _fail_grading(state, scenario_id, "grading failed", exc)
    crash_point("orchestrator.grading.stored")
    await state.blocking(teardown_lab, state, scenario_id)
    return await publish_completion(state, scenario_id)


async def resume_grading(state: OrchestratorState, row: ScenarioRow) -> str:
    """A scenario left in ``grading`` (a crash, a restart): publish its stored result, grade
    its lab again, or, with neither, fail it with the reason (which frees its slot)."""
    scenario_id = row.scenario_id
    if (scenario_dir(state, scenario_id) / COMPLETION_FILE).exists():
        await state.blocking(teardown_lab, state, scenario_id)
        return await publish_completion(state, scenario_id)
    if not await state.blocking(_lab_exists, state, scenario_id):
        logged = await state.blocking(logged_completion, state.settings.storage_root,
                                      scenario_id, states.GRADING)
        if logged:  # graded and completed: the store is older than its log
            return await complete_as_logged(state, scenario_id, logged)
        return await _fail_grading(state, scenario_id,
                                   "the lab was lost during grading; no result was recorded")
    reason = row.state_reason or "regrade"
    log.warning("scenario %s was left in grading without a result; grading again", scenario_id)
    await state.blocking(
        lambda: scenario_log(state.settings.storage_root, scenario_id).append(
            "scenario.regrade", {"reason": "grading was interrupted; graded again"}))
    return await _grade_and_publish(state, scenario_id, reason)


async def complete(state: OrchestratorState, scenario_id: str, reason: str,
                   submitted_at: datetime | None = None) -> str:
    """Grade a running lab and finish it; returns the scenario's state afterwards.

    ``submitted_at`` is when the learner's submit was accepted (the bus's time of the
    submit event), kept in the scenario's details: with submits waiting behind other
    gradings, the move to grading can come well after it, and an instructor's "late" is
    judged by it (`forge.classroom.dashboard`). Never later than now (a bus clock ahead).

    Idempotent: a finished scenario is left as it is; one left in ``grading`` by a crash is
    resumed (published, graded again, or failed with the reason). It stays in ``grading``
    only while its stored result cannot be published (the bus is down) or when a stop of
    the service cut its grading short; the reaper and the next start take it up again.
    """
    async with state.lock_for(scenario_id):
        row = await state.read(load, state.ctx.db, scenario_id)
        if row.state in states.TERMINAL:
            return row.state
        if row.state == states.GRADING:
            return await resume_grading(state, row)
        at = min(aware(submitted_at), datetime.now(UTC)) if submitted_at else None
        reason = graded_reason(reason, row.expires_at, at)
        grading = await state.blocking(
            lambda: move(state.ctx.db, state.settings.storage_root, scenario_id,
                         states.GRADING, reason,
                         details={"submitted_at": at.isoformat()} if at else None)
        )
        await state.announce(grading)
        crash_point("orchestrator.grading")
        # The learner's terminals end with a message now; grading's seal then kills
        # whatever else the learner left running, through the runtime.
        await close_terminals(state, scenario_id, "grading started")
        return await _grade_and_publish(state, scenario_id, reason)


async def end_without_grading(state: OrchestratorState, scenario_id: str, target: str,
                              reason: str) -> str:
    """Delete or expire a scenario that is not graded: tear down, record, announce."""
    async with state.lock_for(scenario_id):
        row = await state.read(load, state.ctx.db, scenario_id)
        if row.state in states.TERMINAL:
            return row.state
        states.check(scenario_id, row.state, target)
        root = state.settings.storage_root
        if row.state in (states.LAUNCHING, states.RUNNING):  # a lab to tear down
            # Kept until the row records it: a restart after a crash in the teardown
            # finishes this end (resume_after_restart), not a "damaged while down" failure.
            await state.blocking(record_ending, root, scenario_id, target, reason)
            # Until the row records it: a store outage from here on leaves the lab torn
            # down under a `running` row, which the reaper then ends as asked.
            state.ends_under_way.add(scenario_id)
        await state.blocking(teardown_lab, state, scenario_id)
        moved = await state.blocking(
            lambda: move(state.ctx.db, root, scenario_id, target, reason)
        )
        await state.blocking(forget_ending, root, scenario_id)
        state.ends_under_way.discard(scenario_id)
        await state.announce_end(moved)
        return target
