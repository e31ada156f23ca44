"""`ended` notices lost on the way: published again, so a learner's quota slot is freed.

A node publishes `ended` when a lab ends; spawn_service frees the learner's quota slot on
it. A notice the bus refused was kept only in the memory of a node that then stopped, and
the slot stayed taken until it lapsed, hours later. The reaper looks once a minute for
ended scenarios whose slot is still taken and publishes their notice again: each node its
own, the lease holder also those of rows naming no node and of nodes that are lost (a node
gone for good never publishes its own again). The message id de-duplicates, and the slot
release is conditional, so a notice twice frees nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, or_, select

from forge.bus import BusUnavailable
from forge.lifecycle import states
from forge.services.orchestrator.state import OrchestratorState
from forge.store.models import QuotaSlot, Scenario

# The reaper's log: operators follow one stream for what it does.
log = logging.getLogger("forge.orchestrator.reaper")
# An ended scenario whose quota slot is still taken this long after its end lost its
# `ended` notice (the bus refused it, then the node stopped before publishing it again).
UNNOTICED_AFTER = timedelta(minutes=1)
MAX_UNNOTICED = 200  # notices published again per look


def _unnoticed_elsewhere(state: OrchestratorState, now: datetime) -> list[str]:
    """Other nodes holding ended scenarios whose quota slot is still taken
    UNNOTICED_AFTER past their end (the lease holder asks which of them are lost)."""
    node = state.node
    if node is None:
        return []
    now = now.astimezone(UTC)
    query = (select(Scenario.node_id).distinct()
             .join(QuotaSlot, QuotaSlot.scenario_id == Scenario.scenario_id)
             .where(Scenario.state.in_(sorted(states.TERMINAL)),
                    QuotaSlot.released_at.is_(None), QuotaSlot.expires_at > now,
                    Scenario.updated_at <= now - UNNOTICED_AFTER,
                    Scenario.node_id.is_not(None), Scenario.node_id != node.node_id))
    with state.ctx.db.read() as sess:
        return sorted(str(node_id) for node_id in sess.execute(query).scalars())


def _unnoticed(state: OrchestratorState, now: datetime,
               lost: Collection[str] = ()) -> list[tuple[str, str]]:
    """(scenario_id, state) of this node's ended scenarios whose quota slot is still taken
    UNNOTICED_AFTER past their end: spawn_service never heard their `ended` notice. The
    lease holder's include those of rows naming no node and of the `lost` nodes (a node
    gone for good never publishes its own again), after this node's own.

    Which rows are this node's (`_mine`) is asked of the store, before the MAX_UNNOTICED
    cut: filtered after it, other nodes' rows could fill every look."""
    now = now.astimezone(UTC)
    query = (select(Scenario.scenario_id, Scenario.state)
             .join(QuotaSlot, QuotaSlot.scenario_id == Scenario.scenario_id)
             .where(Scenario.state.in_(sorted(states.TERMINAL)),
                    QuotaSlot.released_at.is_(None), QuotaSlot.expires_at > now,
                    Scenario.updated_at <= now - UNNOTICED_AFTER))
    node = state.node
    if node is not None:
        own = Scenario.node_id == node.node_id
        if node.leader:
            query = query.where(or_(own, Scenario.node_id.is_(None),
                                    Scenario.node_id.in_(sorted(lost))))
            query = query.order_by(case((own, 0), else_=1))
        else:
            query = query.where(own)
    with state.ctx.db.read() as sess:
        rows = sess.execute(query.limit(MAX_UNNOTICED)).all()
    return [(sid, ended) for sid, ended in rows]


async def _lost_nodes(state: OrchestratorState, now: datetime) -> list[str]:
    """Under the lease: the other nodes with unnoticed ends that are not alive (their
    record lapsed, or has stood still for the grace period as watched from here)."""
    node = state.node
    if node is None or node.kv is None or not node.leader:
        return []
    lost: list[str] = []
    for node_id in await state.blocking(_unnoticed_elsewhere, state, now):
        try:
            if not await node.kv.alive(node_id):
                lost.append(node_id)
        except Exception as exc:  # the registry is away: this node's own still go
            log.warning("lost nodes' ended notices not looked at this time (%s: %s)",
                        type(exc).__name__, exc)
            return []
    return lost


async def notice_unnoticed(state: OrchestratorState) -> int:
    """Publish `ended` again for this node's ended scenarios whose slot is still taken (a
    notice the bus refused, kept only in the memory of a node that then stopped: the slot
    stayed taken until it lapsed, hours later), and under the lease for those of lost
    nodes; how many. The message id de-duplicates.

    One log line per look, however many (a busy node whose learners' service was away
    logged one per scenario, up to MAX_UNNOTICED a minute); each is counted in
    `forge_ended_notices_republished_total`."""
    now = datetime.now(UTC)
    lost = await _lost_nodes(state, now)
    done: list[str] = []
    try:
        for scenario_id, ended in await state.blocking(_unnoticed, state, now, lost):
            try:
                await state.announce_ended(scenario_id, ended)
            except BusUnavailable as exc:
                log.warning("ended notice of %s not published again yet (%s)",
                            scenario_id, exc)
                break
            done.append(scenario_id)
    finally:
        if done:
            if state.republished is not None:
                state.republished.inc(len(done))
            log.info("%d ended scenario(s) with their quota slot still taken: ended notice "
                     "published again (%s%s)%s", len(done), ", ".join(done[:3]),
                     ", …" if len(done) > 3 else "",
                     f"; lost nodes among them: {', '.join(lost)}" if lost else "")
    return len(done)
