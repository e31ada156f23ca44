"""`ended` notices lost on the way: published again, so a learner's quota slot is freed.

A node publishes `ended` when a lab ends; spawn_service frees the learner's quota slot on
it. A notice the bus refused was kept only in the memory of a node that then stopped, and
the slot stayed taken until it lapsed, hours later. The reaper looks once a minute for
ended scenarios whose slot is still taken and publishes their notice again: each node its
own, the lease holder also those of rows naming no node and of nodes that are lost (a node
gone for good never publishes its own again). The slot release is conditional, so a
notice twice frees nothing twice.

A republish carries its own message id (`_again`), not the first notice's: a first notice
the bus stored but that freed nothing (spawn_service dead-lettered it, its store away) was
matched by the republish's id, dropped as a duplicate for the bus's whole window (ten
minutes), and counted as published all the same. The id changes once per REPUBLISH_EVERY
of the end's age, so looks in between are duplicates the bus drops (a learners' service
away for an hour meets a dozen notices per lab, not sixty), said and counted as such.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, or_, select, true

from forge.bus import BusUnavailable
from forge.lifecycle import states
from forge.services.orchestrator.state import OrchestratorState
from forge.store.models import QuotaSlot, Scenario
from forge.store.timestamps import aware

# The reaper's log: operators follow one stream for what it does.
log = logging.getLogger("forge.orchestrator.reaper")
# An ended scenario whose quota slot is still taken this long after its end lost its
# `ended` notice (the bus refused it, then the node stopped before publishing it again).
UNNOTICED_AFTER = timedelta(minutes=1)
MAX_UNNOTICED = 200  # notices published again per look
# How often a lab's republished notice gets a new message id (under the bus's ten-minute
# duplicate window, so one look in each such stretch reaches spawn_service).
REPUBLISH_EVERY = timedelta(minutes=5)


def _again(ended_at: datetime, now: datetime) -> str:
    """The message id suffix of a republish: the end's age in REPUBLISH_EVERY steps."""
    age = max(now - aware(ended_at), timedelta(0))
    return f"again{age // REPUBLISH_EVERY}"


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


def _unnoticed(state: OrchestratorState, now: datetime, lost: Collection[str] = (),
               after_start: bool = False) -> list[tuple[str, str, datetime]]:
    """(scenario_id, state, ended at) of this node's ended scenarios whose quota slot is still taken
    UNNOTICED_AFTER past their end: spawn_service never heard their `ended` notice. The
    lease holder's include those of rows naming no node and of the `lost` nodes (a node
    gone for good never publishes its own again), after this node's own.

    Which rows are this node's (`_mine`) is asked of the store, before the MAX_UNNOTICED
    cut: filtered after it, other nodes' rows could fill every look.

    At the first look `after_start`, this node's own need no UNNOTICED_AFTER: no notice
    of theirs can be on its way (the process that would publish it is gone). A node
    killed as it ended a lab (row moved, notice not yet out) held its learner's slot for
    a minute or two after the restart, till the next look found the end old enough."""
    now = now.astimezone(UTC)
    node = state.node
    aged = Scenario.updated_at <= now - UNNOTICED_AFTER
    if after_start:
        aged = or_(aged, Scenario.node_id == node.node_id) if node is not None else true()
    query = (select(Scenario.scenario_id, Scenario.state, Scenario.updated_at)
             .join(QuotaSlot, QuotaSlot.scenario_id == Scenario.scenario_id)
             .where(Scenario.state.in_(sorted(states.TERMINAL)),
                    QuotaSlot.released_at.is_(None), QuotaSlot.expires_at > now, aged))
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
    return [(sid, ended, at) for sid, ended, at in rows]


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


def _summary(done: list[str], dropped: int, lost: Collection[str]) -> str:
    """One look's log line: the notices the bus took again, and those it already had."""
    parts = []
    if done:
        parts.append(f"{len(done)} ended scenario(s) with their quota slot still taken: "
                     f"ended notice published again ({', '.join(done[:3])}"
                     f"{', …' if len(done) > 3 else ''})")
    if dropped:
        parts.append(f"{dropped} ended scenario(s) with their quota slot still taken: ended "
                     "notice already on the bus since an earlier look (dropped as a duplicate)")
    if lost:
        parts.append(f"lost nodes among them: {', '.join(lost)}")
    return "; ".join(parts)


async def notice_unnoticed(state: OrchestratorState, *, after_start: bool = False) -> int:
    """Publish `ended` again for this node's ended scenarios whose slot is still taken (a
    notice the bus refused, kept only in the memory of a node that then stopped: the slot
    stayed taken until it lapsed, hours later), and under the lease for those of lost
    nodes; how many the bus took as new (`_again`: not those it dropped as duplicates).

    One log line per look, however many (a busy node whose learners' service was away
    logged one per scenario, up to MAX_UNNOTICED a minute); each taken is counted in
    `forge_ended_notices_republished_total`, the duplicates only in the line. The first
    look `after_start` takes this node's own however recent their end (`_unnoticed`)."""
    now = datetime.now(UTC)
    lost = await _lost_nodes(state, now)
    done: list[str] = []
    dropped = 0
    try:
        for scenario_id, ended, at in await state.blocking(_unnoticed, state, now, lost,
                                                           after_start):
            try:
                ack = await state.announce_ended(scenario_id, ended, _again(at, now))
            except BusUnavailable as exc:
                log.warning("ended notice of %s not published again yet (%s)",
                            scenario_id, exc)
                break
            if ack.duplicate:
                dropped += 1
            else:
                done.append(scenario_id)
    finally:
        if done and state.republished is not None:
            state.republished.inc(len(done))
        if done or dropped:
            log.info("%s", _summary(done, dropped, lost))
    return len(done)
