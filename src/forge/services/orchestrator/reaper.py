"""Time: expire labs on their deadline (also after downtime) and reconcile with the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select

from forge.audit.log import scenario_log
from forge.disk_room import short_of_room
from forge.evidence.artifact_store import COMPLETION_FILE
from forge.lifecycle import states
from forge.lifecycle.ending import ending_of
from forge.lifecycle.torn_down import discard_scenario_files
from forge.lifecycle.wanted_delete import DELETE_REASON, delete_wanted
from forge.runtime.base import Runtime
from forge.services.orchestrator.end_notices import notice_unnoticed
from forge.services.orchestrator.grade_lab import complete, end_without_grading, scenario_dir
from forge.services.orchestrator.launch_resume import resume_launch
from forge.services.orchestrator.node import ROOM_NEEDED_BYTES
from forge.services.orchestrator.restored_store import complete_as_logged, logged_completion
from forge.services.orchestrator.state import OrchestratorState
from forge.services.orchestrator.sweeper import claim_adopted
from forge.store.data_version import DataVersion
from forge.store.models import Scenario
from forge.store.timestamps import aware
from forge_verify.score import SCENARIO_ID_RE

log = logging.getLogger("forge.orchestrator.reaper")
STUCK_AFTER = timedelta(minutes=10)
# Nothing in this process works on it (its lock is free) and it has not moved for this long.
STUCK_LAUNCHING = timedelta(minutes=2)
STUCK_GRADING = timedelta(minutes=1)
MAX_SKIPPED_NAMED = 1000  # rows the reaper skips, each logged once (a bounded memory)
UNNOTICED_EVERY_S = 60.0  # how often the reaper looks for lost `ended` notices


def _mine(state: OrchestratorState, node_id: str | None) -> bool:
    """This node's own labs; rows without a node (queued spawns, rows from before nodes)
    are a cluster-wide duty, done only by the lease holder (one node: always itself)."""
    node = state.node
    if node is None:
        return True
    return node.leader if node_id is None else node_id == node.node_id


def _due(state: OrchestratorState, now: datetime) -> list[tuple[str, str]]:
    """(scenario_id, state) of every scenario the reaper must act on now.

    The store returns only rows that may be due (a class's running labs before their
    deadline never reach Python: loading and checking all of them every pass cost 11.6 ms
    of CPU per pass at 1,000 live labs); grading rows are all returned, their completion
    file decides. ``now`` is compared in UTC (SQLite keeps times as naive UTC text)."""
    now = now.astimezone(UTC)
    with state.ctx.db.read() as sess:
        rows = sess.execute(
            select(Scenario.scenario_id, Scenario.state, Scenario.updated_at,
                   Scenario.node_id)
            .where(or_(
                and_(Scenario.state == states.RUNNING, Scenario.expires_at <= now),
                and_(Scenario.state == states.PENDING,
                     Scenario.updated_at <= now - STUCK_AFTER),
                and_(Scenario.state == states.LAUNCHING,
                     Scenario.updated_at <= now - STUCK_LAUNCHING),
                Scenario.state == states.GRADING))
        ).all()
    due: list[tuple[str, str]] = []
    room: list[bool] = []  # whether the storage has room, asked once and only if needed
    for scenario_id, current, updated_at, node_id in rows:
        if not _mine(state, node_id):
            continue
        try:
            if current == states.GRADING and not _grading_due(state, scenario_id,
                                                              updated_at, now, room):
                continue
        except (ValueError, TypeError, AttributeError, OSError) as exc:
            # One row the reaper cannot judge (a bad id, no update time, an unreadable
            # folder) must not hold back every other lab's expiry; said once per row.
            skipped = state.reaper_skipped
            if len(skipped) < MAX_SKIPPED_NAMED and scenario_id not in skipped:
                skipped.add(scenario_id)
                log.error("reaper skips scenario row %.80r, which it cannot judge (%s); "
                          "fail or fix it by hand", scenario_id, type(exc).__name__)
            continue
        due.append((scenario_id, current))
    return due


LIVE_STATES = (states.RUNNING, states.PENDING, states.LAUNCHING, states.GRADING)


def _due_or_none_live(state: OrchestratorState, now: datetime,
                      look_live: bool) -> tuple[list[tuple[str, str]], bool]:
    """`_due`, and (asked only with `look_live`) whether the store holds no scenario in a
    state the reaper acts on."""
    due = _due(state, now)
    if due or not look_live:
        return due, False
    with state.ctx.db.read() as sess:
        live = sess.execute(select(Scenario.scenario_id)
                            .where(Scenario.state.in_(LIVE_STATES)).limit(1)).first()
    return due, live is None


async def due_now(state: OrchestratorState) -> list[tuple[str, str]]:
    """`_due` now, not read while the last read found no live scenario and nothing was
    committed since (SQLite; PostgreSQL is read every pass, never asked for live ones): an
    idle orchestrator read it every pass (5 s), its largest idle cost."""
    if state.reaper_version is None:
        state.reaper_version = DataVersion(state.ctx.db.url)
    version = state.reaper_version
    if not version.changed() and state.reaper_saw_none:  # asked first: later commits seen
        return []
    due, state.reaper_saw_none = await state.blocking(_due_or_none_live, state,
                                                      datetime.now(UTC), version.tracks)
    return due


def _grading_due(state: OrchestratorState, scenario_id: str, updated_at: datetime,
                 now: datetime, room: list[bool]) -> bool:
    """A grading is due when its node wrote the completion file (the result is ready to
    publish), or when it has not moved for STUCK_GRADING and the storage has room: one
    stopped by a full disk (its lab kept) is graded again once there is room, not every
    pass meanwhile (each ran the lab's checks again and logged two warnings)."""
    if (scenario_dir(state, scenario_id) / COMPLETION_FILE).exists():
        return True
    if now - aware(updated_at) < STUCK_GRADING:
        return False
    if not room:
        room.append(not short_of_room(state.settings.storage_root, ROOM_NEEDED_BYTES))
    return room[0]


async def reap_once(state: OrchestratorState) -> int:
    """Act on every due scenario; returns how many were handled.

    A scenario this process is working on (its lock is held) is left alone: what is due is
    what a crash or an outage left behind. Once a minute (at once after a start), ended
    scenarios whose `ended` notice was lost get it again (`notice_unnoticed`).
    """
    if time.monotonic() - state.unnoticed_checked_at >= UNNOTICED_EVERY_S:
        after_start = state.unnoticed_checked_at == float("-inf")
        state.unnoticed_checked_at = time.monotonic()
        try:
            await notice_unnoticed(state, after_start=after_start)
        except Exception:
            log.exception("ended notices could not be checked")
    handled = await _finish_ends_cut_short(state)
    for scenario_id, current in await due_now(state):
        if current != states.RUNNING and state.lock_for(scenario_id).locked():
            continue
        try:
            if current == states.RUNNING and await state.blocking(
                    _delete_wanted, state, scenario_id):
                # Asked for while this node did not answer (`lifecycle.wanted_delete`).
                await end_without_grading(state, scenario_id, states.DELETED, DELETE_REASON)
            elif current in (states.RUNNING, states.GRADING):
                await complete(state, scenario_id, "expired")
            elif current == states.LAUNCHING:
                await resume_launch(state, scenario_id)
            else:
                await end_without_grading(state, scenario_id, states.EXPIRED,
                                          "deadline passed before the lab ran")
            handled += 1
        except Exception:
            log.exception("reaper could not handle %s", scenario_id)
    return handled


async def _finish_ends_cut_short(state: OrchestratorState) -> int:
    """Finish the ends this process kept and began but could not record (the store failed
    between the lab's teardown and the row's move): each ends as asked, as after a crash
    (`resume_after_restart`), not left `running` without its lab until its deadline
    graded it and failed it as lost. Returns how many were ended."""
    ended = 0
    for scenario_id in sorted(state.ends_under_way):
        if state.lock_for(scenario_id).locked():
            continue  # under way right now
        try:
            ending = await state.blocking(ending_of, state.settings.storage_root,
                                          scenario_id)
            if ending is not None:
                await end_without_grading(state, scenario_id, *ending)
                ended += 1
            state.ends_under_way.discard(scenario_id)
        except Exception:
            log.exception("reaper could not finish the end of %s; it tries again",
                          scenario_id)
    return ended


def _reconciled_here(state: OrchestratorState, scenario_id: str, node_id: str | None,
                     labs: set[str]) -> bool:
    """Is this live row reconciled by this node (adopted, or failed as lost)?"""
    if node_id is not None:
        return state.holds(node_id)
    return scenario_id in labs or state.node is None or state.settings.node_url is None


def reconcile(state: OrchestratorState) -> dict[str, list[str]]:
    """Adopt labs whose scenario is live (``damaged``: those of them found partial, failed by
    ``resume_after_restart``); destroy orphans; fail live scenarios without a lab. A
    ``foreign`` lab (of this prefix, with no state of this node's) is neither adopted nor
    destroyed: it belongs to another installation using the same prefix."""
    found = []
    for info in state.runtime.list():
        if info.state == "foreign":
            log.warning("lab %s has this node's runtime prefix but no state under its storage "
                        "root; left alone (does another installation use this "
                        "FORGE_RUNTIME_PREFIX?)", info.lab_id)
        else:
            found.append(info)
    state.adopted_hosts = {info.lab_id: info.hosts for info in found}
    labs = {info.lab_id for info in found}
    partial = {info.lab_id for info in found if info.state != "running"}
    with state.ctx.db.read() as sess:
        rows = sess.execute(select(Scenario.scenario_id, Scenario.node_id)
                            .where(Scenario.state.in_(list(states.LIVE)))).all()
    # Only this node's labs: another node's live lab is not lost because it is not in this
    # node's runtime. A row from before nodes names none: it is this node's when its lab is
    # here (or this is the one node); else it may run on another node (adopted at that
    # node's start) and the rest is the lease holder's (`_mine`).
    live = {sid for sid, node_id in rows if _reconciled_here(state, sid, node_id, labs)}
    elsewhere = {sid for sid, node_id in rows if node_id is not None
                 and not state.holds(node_id)}
    report: dict[str, list[str]] = {"adopted": [], "destroyed": [], "lost": [],
                                    "damaged": []}
    for lab_id in sorted(labs):
        if lab_id in live:
            report["adopted"].append(lab_id)
        elif lab_id in elsewhere:
            log.warning("lab %s is in this runtime but its row names another node; left "
                        "alone (do two nodes share FORGE_RUNTIME_PREFIX?)", lab_id)
        else:
            report["destroyed"].append(lab_id)
    if report["destroyed"]:  # orphans together (a crashed run's pool labs can be many)
        state.runtime.destroy_many(report["destroyed"])
    for lab_id in report["destroyed"]:
        # A scenario's orphan ended while this node was down (failed as this node lost,
        # by an operator): what the node kept of it (raw evidence of an interrupted
        # grading, terminal recordings) goes with the lab. Final, it is never resumed, and
        # retention removes only results: nothing else would.
        if SCENARIO_ID_RE.fullmatch(lab_id) is not None:
            discard_scenario_files(state.settings.storage_root, lab_id)
    report["lost"] = sorted(live - labs)
    report["damaged"] = sorted(set(report["adopted"]) & partial)
    if state.node is not None:
        claim_adopted(state.ctx.db, report["adopted"], state.node.node_id,
                      state.settings.node_url)
    return report


async def resume_after_restart(state: OrchestratorState,
                               report: dict[str, list[str]]) -> None:
    """Give every live scenario found by ``reconcile`` its way out.

    ``launching``: a complete lab is marked running, anything else is built again from
    the accepted spawn (or failed after its attempts). ``grading``: the stored result is
    published, or the lab is graded again, or (no lab) the scenario fails with the reason.
    ``running`` without its lab, or with part of it gone (``damaged``: a host's namespace
    or init missing): failed, what is left torn down, and its slot freed. A ``launching``
    or ``running`` scenario whose end (a delete, an expiry) was under way when the node
    stopped (``lifecycle.ending``) gets that end instead, whatever is left of its lab.
    """
    for scenario_id in sorted({*report["adopted"], *report["lost"]}):
        try:
            row_state = await state.blocking(lambda sid=scenario_id: _state_of(state, sid))
            if row_state == states.LAUNCHING:  # it finishes a kept end itself
                await resume_launch(state, scenario_id)
            elif row_state == states.GRADING:
                await complete(state, scenario_id, "resumed")
            elif row_state == states.RUNNING and (ending := await state.blocking(
                    ending_of, state.settings.storage_root, scenario_id)) is not None:
                # Cut short by the crash: the end asked for (a delete, an expiry) finishes.
                await end_without_grading(state, scenario_id, *ending)
            elif row_state == states.RUNNING and scenario_id in report["lost"] and (
                    logged := await state.blocking(logged_completion,
                                                   state.settings.storage_root,
                                                   scenario_id, states.RUNNING)):
                # Graded and completed after the backup the store was restored from.
                await complete_as_logged(state, scenario_id, logged)
            elif row_state == states.RUNNING and scenario_id in report["lost"]:
                await _end_if_still_broken(state, scenario_id,
                                           "lab was lost while the orchestrator was down")
            elif row_state == states.RUNNING and scenario_id in report["damaged"]:
                await _end_if_still_broken(state, scenario_id,
                                           "lab was damaged while the orchestrator was down "
                                           "(part of it is gone)")
        except Exception:
            log.exception("could not resume %s after a restart; the reaper will retry",
                          scenario_id)
    if any(report.values()):
        log.info("reconciled labs: %s", report)


async def _end_if_still_broken(state: OrchestratorState, scenario_id: str,
                               reason: str) -> None:
    """Fail a ``running`` scenario whose lab ``reconcile`` found missing or partial, unless
    it is whole by now. The consumers start with this resume under way, and a spawn event
    the crash left unacknowledged comes back: its launch rebuilds a lab left ``launching``
    and marks it running before this loop reaches it, which the start's snapshot still
    showed half-built, and the new lab was failed and torn down. Read under the scenario's
    lock: a launch moves it only from ``launching``, so once seen ``running`` with its lab
    broken, nothing repairs it before the end below."""
    async with state.lock_for(scenario_id):
        row_state = await state.blocking(_state_of, state, scenario_id)
        if row_state != states.RUNNING:
            return
        found = {i.lab_id: i for i in await state.blocking(state.runtime.list)}
        info = found.get(scenario_id)
        if info is not None and info.state == "running":
            log.info("scenario %s: its lab is whole again (rebuilt since the start's "
                     "reconcile); left running", scenario_id)
            return
    await end_without_grading(state, scenario_id, states.FAILED, reason)


def _delete_wanted(state: OrchestratorState, scenario_id: str) -> bool:
    with state.ctx.db.read() as sess:
        row = sess.get(Scenario, scenario_id)
        return row is not None and delete_wanted(row.details)


def _state_of(state: OrchestratorState, scenario_id: str) -> str | None:
    with state.ctx.db.read() as sess:
        row = sess.get(Scenario, scenario_id)
        return row.state if row else None


Trimmed = list[tuple[str, str, int]]  # (lab, host, how many removed) per trimmed host
# The machine-wide kernel tables a learner (with NET_ADMIN, but for accept queues) can fill
# outside the lab's limits, each trimmed by its runtime's method every reaper pass: (the
# trim, what it removes, what the log calls it).
KERNEL_TRIMS: tuple[tuple[Callable[[Runtime], Trimmed], str, str], ...] = (
    (lambda rt: rt.trim_neighbours(), "neighbour entries", "neighbour"),
    (lambda rt: rt.trim_conntrack(), "connection-tracking entries", "connection-tracking"),
    (lambda rt: rt.trim_traffic_control(), "traffic-control objects", "traffic-control"),
    (lambda rt: rt.trim_nexthops(), "nexthop objects", "nexthop"),
    (lambda rt: rt.trim_address_labels(), "IPv6 address labels", "address-label"),
    (lambda rt: rt.trim_routes(), "addresses and routes", "route"),
    (lambda rt: rt.trim_listen_queues(), "unaccepted TCP connections", "listen-queue"),
)


async def trim_kernel_table(state: OrchestratorState, trim: Callable[[Runtime], Trimmed],
                            what: str) -> int:
    """Take back what a learner piled up in one kernel table on a lab host (``trim``, one
    of KERNEL_TRIMS), saying so in the log and in the scenario's audit log; how many hosts
    were trimmed."""
    trimmed = await state.blocking(trim, state.runtime)
    return await _note_trimmed(state, trimmed, what)


async def _note_trimmed(state: OrchestratorState, trimmed: Trimmed, what: str) -> int:
    for lab_id, host, removed in trimmed:
        log.warning("lab %s host %s: %d %s removed (they hold the machine's kernel memory "
                    "outside the lab's limits)", lab_id, host, removed, what)
        if SCENARIO_ID_RE.fullmatch(lab_id):
            with contextlib.suppress(Exception):
                await state.blocking(
                    lambda lab=lab_id, h=host, n=removed: scenario_log(
                        state.settings.storage_root, lab).append("scenario.note", {
                            "note": f"host {h}: {n} {what} removed "
                                    "(more than a lab may keep)"}))
    return len(trimmed)


async def run_reaper(state: OrchestratorState, interval_s: float) -> None:
    """Background task: reap every `interval_s` seconds until cancelled (and trim what
    labs pile up in the machine's neighbour, connection-tracking, traffic-control, nexthop,
    address-label and routing tables and in their listeners' accept queues)."""
    while True:
        try:
            await reap_once(state)
        except Exception:
            log.exception("reaper pass failed")
        await trim_kernel_tables(state)
        await asyncio.sleep(interval_s)


async def trim_kernel_tables(state: OrchestratorState) -> None:
    """One pass of every KERNEL_TRIMS, unless the runtime holds no lab: then each would find
    nothing, and an idle node saves their seven thread hops and machine-wide reads every
    pass. A trim that fails is logged; the others still run."""
    try:
        if not await state.blocking(state.runtime.holds_labs):
            return
    except Exception:
        log.exception("asking the runtime for its labs failed; trimming anyway")
    for trim, what, table_name in KERNEL_TRIMS:
        try:
            await trim_kernel_table(state, trim, what)
        except Exception:
            log.exception("%s trim failed", table_name)
