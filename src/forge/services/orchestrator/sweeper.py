"""The node heartbeat loop, and the cluster-wide duty it carries under the lease: failing
the labs of lost nodes (a node whose KV record lapsed for longer than the grace period)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from sqlalchemy import update

from forge.bus.errors import BusUnavailable
from forge.bus.nodes import NodeIdInUse
from forge.lifecycle import states
from forge.lifecycle.states import IllegalTransition
from forge.lifecycle.store import ScenarioNotFound, move
from forge.lifecycle.torn_down import discard_scenario_files
from forge.lifecycle.wanted_delete import wanted_among
from forge.runtime.base import LabNotFound, RuntimeFault
from forge.services.orchestrator.node import (
    LIVE_PLACED,
    LabNode,
    bus_failure,
    lost_deleted_reason,
    lost_reason,
    read_placed,
)
from forge.services.orchestrator.state import OrchestratorState
from forge.store.db import Database
from forge.store.finalized_audits import finalized_among
from forge.store.models import Scenario

log = logging.getLogger("forge.orchestrator.sweeper")


def graded_before_loss_reason(node_id: str) -> str:
    """Why a lost node's scenario in `grading` is completed, not failed: its verdict was
    signed already (the node published its completion, then died before recording it)."""
    return f"graded (its verdict was signed before lab node {node_id} was lost)"


def live_elsewhere(db: Database, own: str) -> dict[str, list[tuple[str, str]]]:
    """Live scenarios held by other nodes: node_id -> [(scenario_id, state)]."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with db.read() as sess:
        rows = sess.connection().execute(LIVE_PLACED).all()
    for node_id, scenario_id, _template, current in rows:
        if node_id != own:
            out[str(node_id)].append((scenario_id, current))
    return dict(out)


def claim_adopted(db: Database, scenario_ids: list[str], node_id: str,
                  url: str | None) -> None:
    """Labs found in this node's runtime whose row names no node (written before nodes
    existed) are this node's."""
    if not scenario_ids:
        return
    with db.session() as sess:
        sess.execute(update(Scenario).where(Scenario.scenario_id.in_(scenario_ids),
                                            Scenario.node_id.is_(None))
                     .values(node_id=node_id, node_url=url))


async def fail_lost_nodes(state: OrchestratorState,
                          groups: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Under the lease only: fail every live lab of each lost node, with the reason (a
    running one whose delete was kept for the node ends deleted, one with a signed verdict
    completed).
    `groups` is every other node's live labs (node_id -> [(scenario_id, state)]).

    Only once this node has been in touch with the bus for a grace period: right after an
    outage or failover every other node's record is stale too, and they get a grace period
    to heartbeat again before they count as lost.

    The move is conditional on the state read (row lock), so even a lease handed over
    mid-sweep cannot fail a scenario twice; the `ended` notice frees its slot.

    Every node watches the records of the nodes holding labs (`NodeRegistry.alive` times
    each record's revision on this process's clock), leader or not: a node that takes the
    lease over from a lost holder already knows how long each record has stood still.
    """
    node = state.node
    if node is None or node.kv is None:
        return []
    lost = [lost_id for lost_id in sorted(groups) if not await node.kv.alive(lost_id)]
    if not node.leader or not node.may_judge_loss():
        return []
    failed: list[str] = []
    for lost_id in lost:
        items = groups[lost_id]
        reason = lost_reason(lost_id)
        log.warning("%s: failing its %d live lab(s)", reason, len(items))
        # A scenario in grading whose verdict the scoreboard already signed (the node
        # published its completion and died before moving it to completed) is completed:
        # failing it showed the learner `failed` beside a signed verdict.
        grading = [sid for sid, current in items if current == states.GRADING]
        scored = await state.blocking(finalized_among, state.ctx.db, grading) \
            if grading else set()
        # A running one whose delete was kept for the node (`want_delete`) is deleted, as
        # asked: it read `failed` ("lab node … lost") beside the learner's own delete. One
        # still launching never ran: failed as lost, it uses no attempt
        # (`classroom.attempts`); `deleted`, it took the learner's attempt (their only one,
        # often) for a launch the platform never finished.
        wanted = await state.blocking(wanted_among, state.ctx.db,
                                      [sid for sid, current in items
                                       if current == states.RUNNING])
        for scenario_id, current in items:
            target, why = ((states.COMPLETED, graded_before_loss_reason(lost_id))
                           if scenario_id in scored else
                           (states.DELETED, lost_deleted_reason(lost_id))
                           if scenario_id in wanted else (states.FAILED, reason))
            try:
                moved = await state.blocking(
                    lambda sid=scenario_id, cur=current, to=target, why=why, gone=lost_id: move(
                        state.ctx.db, state.settings.storage_root, sid, to, why,
                        expected=cur, details={"lost_node": gone}))
            except (IllegalTransition, ScenarioNotFound):
                continue  # it moved meanwhile (the node came back, or another sweep)
            failed.append(scenario_id)
            node.unannounced[scenario_id] = moved
    await announce_failed(state)
    return failed


async def announce_failed(state: OrchestratorState) -> None:
    """Publish the notices of final moves the bus refused: the lost nodes' labs this node
    failed (`failed`, then `ended`, which frees the quota slot; only `ended` for one it
    completed) and this node's own ended labs (`OrchestratorState.announce`). The row moved already,
    so no later sweep sees the lab again: a notice the bus refused (failover) is kept and
    published again next heartbeat (the msg ids de-duplicate a notice that did get
    through)."""
    node = state.node
    assert node is not None
    for scenario_id, moved in list(node.unannounced.items()):
        try:
            if moved.to_state == states.COMPLETED:
                # Its completion event is the node's, published already: only the notice
                # (`forge.scenario.completed` is the completion's subject, not a transition's).
                node.release(scenario_id)
                await state.announce_ended(scenario_id, states.COMPLETED)
            else:
                await state.announce(moved)
        except BusUnavailable as exc:
            log.warning("notice of %s %s not published yet (%s); retrying next heartbeat",
                        moved.to_state, scenario_id, exc)
            return
        node.unannounced.pop(scenario_id, None)


async def destroy_failed_as_lost(state: OrchestratorState, scenario_ids: list[str]) -> None:
    """This node was judged lost (cut off from the bus for longer than the grace period) and
    the lease holder failed these labs of its meanwhile: they must not keep running, unseen
    and outside the node's capacity, now that it is back."""
    for scenario_id in scenario_ids:
        async with state.lock_for(scenario_id):
            # Whatever of its grading this node had kept (a result stored while the bus
            # was away, the terminal recordings) goes too: the scenario is final and is
            # never resumed, so nothing else would remove it.
            await state.blocking(discard_scenario_files, state.settings.storage_root,
                                 scenario_id)
            try:
                await state.blocking(state.runtime.destroy, scenario_id)
            except LabNotFound:
                continue
            except RuntimeFault:
                log.exception("lab %s, failed while this node was lost, could not be "
                              "destroyed; reconciliation at the next start will", scenario_id)
                continue
        log.warning("destroyed lab %s: it was failed while this node was lost", scenario_id)


async def heartbeat_once(state: OrchestratorState) -> None:
    """Resync held labs (destroying those failed while this node was lost), heartbeat (drain
    flag, record, lease), watch the other nodes' records and sweep if leader."""
    node = state.node
    assert node is not None
    node.released_since_read.clear()  # releases from here on are not adopted back
    placed = node.settled()  # idle: nothing committed since the last read, no thread hop
    if placed is None:
        placed = await state.blocking(read_placed, state.ctx.db, node.registry, node.node_id,
                                      frozenset(node.held))  # one thread hop, one read
    await destroy_failed_as_lost(state, node.resync(placed))
    node.resynced(placed)
    await node.beat()
    if node.unannounced:
        await announce_failed(state)
    # every node watches; only the lease holder fails labs
    await fail_lost_nodes(state, placed.elsewhere)


STALE_BEATS = 3  # heartbeats failing for this many intervals: the node check fails


def heartbeat_stale(node: LabNode, every_s: float) -> float | None:
    """Seconds since this node's last successful heartbeat when they have been failing for
    more than STALE_BEATS intervals (the last one failed), else None."""
    if node.beat_error is None:
        return None
    last = node.last_beat_at if node.last_beat_at is not None else node.beat_failing_since
    if last is None:
        return None
    age = time.monotonic() - last
    return age if age > STALE_BEATS * every_s else None


MOVED_ON_WAIT_S = 3.0  # how long a heartbeat waits for the next server before beating again


async def run_heartbeats(state: OrchestratorState) -> None:
    """Background task: one heartbeat every FORGE_NODE_HEARTBEAT_S until cancelled.

    A heartbeat that times out leaves its server for the next one of the cluster and beats
    again as soon as connected there: a server that hangs (stopped, wedged) keeps its
    socket open and answers nothing, and the node would otherwise go on asking it until
    the lease holder judged the node lost and failed its labs."""
    node = state.node
    assert node is not None
    while True:
        wait = state.settings.node_heartbeat_s
        try:
            await heartbeat_once(state)
            node.beat_error = node.beat_failing_since = None
        except NodeIdInUse as exc:
            node.fenced = True  # fail closed: another live process has this node's id
            log.error("%s", exc)
        except Exception as exc:
            node.beat_error = f"{type(exc).__name__}: {exc}"[:300]
            if node.beat_failing_since is None:
                node.beat_failing_since = time.monotonic()
            node.lease_revision = None  # out of touch: no cluster-wide duty meanwhile
            node.in_touch_since = None  # and no judging others until watched a grace period
            if bus_failure(exc):
                node.kv.forget() if node.kv is not None else None
                log.warning("node heartbeat failed: %s: %s", type(exc).__name__, exc)
                # Only from a server that answers nothing: a JetStream request that timed
                # out on a live server (lost quorum, a leader election) is not its fault.
                if isinstance(exc, TimeoutError) and node.bus is not None \
                        and await node.bus.leave_if_hung(state.settings.node_grace_s / 8):
                    log.warning("node heartbeat: its server answered nothing; moved on to "
                                "the next server of the cluster")
                    if await node.bus.wait_ready(MOVED_ON_WAIT_S):
                        wait = 0.0
            else:
                log.exception("node heartbeat failed")
        await asyncio.sleep(wait)
