"""Everything the orchestrator holds for its lifetime."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import Counter

from forge.bus import BusUnavailable, DurableConsumer, PublishAck, Publisher
from forge.bus.contracts import (
    MAX_REASON,
    ScenarioEndedV1,
    ScenarioTransitionV1,
    publish_event,
)
from forge.bus.subjects import TERMINAL_STATES
from forge.config.settings import Settings
from forge.lifecycle.store import Transition
from forge.plans import PlanCatalog
from forge.policy.decision import PolicyEngine
from forge.runtime.base import Runtime
from forge.services.common.app import ServiceContext
from forge.services.common.store_reads import read_call
from forge.services.orchestrator.node import LabNode
from forge.services.orchestrator.terminal_sessions import TerminalSessions
from forge.services.orchestrator.terminal_slots import TerminalSlots
from forge.store.consumed_tokens import SqlReplayStore
from forge.store.data_version import DataVersion
from forge.templates.registry import TemplateRegistry

T = TypeVar("T")
log = logging.getLogger("forge.orchestrator.state")


@dataclass
class OrchestratorState:
    """The orchestrator's long-lived parts."""

    ctx: ServiceContext
    registry: TemplateRegistry
    catalog: PlanCatalog
    engine: PolicyEngine
    runtime: Runtime
    publisher: Publisher
    replay: SqlReplayStore
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(16))
    # Lab creates have their own threads: the runtime builds a few fresh labs at a time
    # (its build slots) and the rest wait there, so in a burst they would otherwise hold
    # every thread the store, teardowns and grading need. A pooled claim waits for no slot.
    builds: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        64, thread_name_prefix="forge-build"))
    consumers: list[DurableConsumer] = field(default_factory=list)
    # A scenario's lock lives while a transition holds or awaits it, then goes: a plain
    # dict kept one for every lab the node ever ran.
    locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary)
    adopted_hosts: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    terminals: TerminalSlots = field(default_factory=TerminalSlots)
    node: LabNode | None = None
    # scenario rows the reaper could not judge, each logged once (at most
    # reaper.MAX_SKIPPED_NAMED are remembered)
    reaper_skipped: set[str] = field(default_factory=set)
    # scenarios whose end (a delete, an expiry, an operator's destroy) was kept and begun
    # here but not yet recorded: one the store cut short is finished by the reaper
    ends_under_way: set[str] = field(default_factory=set)
    # monotonic time of the reaper's last look for lost `ended` notices (-inf: not yet)
    unnoticed_checked_at: float = float("-inf")
    # the store's commits as the reaper last saw them (SQLite), and whether that read found
    # no live scenario: then no pass reads it again until a commit (`reaper.due_now`)
    reaper_version: DataVersion | None = None
    reaper_saw_none: bool = False
    # `ended` notices the reaper published again (`end_notices.notice_unnoticed`), when metered
    republished: Counter | None = None
    # live terminal sessions (one shell per lab and host); their slots are `terminals`
    terminal_sessions: TerminalSessions = field(init=False)

    def __post_init__(self) -> None:
        self.terminal_sessions = TerminalSessions(self.terminals)

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call (DB, runtime) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking store read (only a read): on the event loop with SQLite, whose
        snapshot never waits for a writer and costs less than the thread hop; on a worker
        thread elsewhere (`forge.services.common.store_reads`)."""
        return await read_call(self.ctx.db, fn, *args)

    async def building(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a lab create off the event loop, on the builds' own threads."""
        return await asyncio.get_running_loop().run_in_executor(self.builds, fn, *args)

    def holds(self, node_id: str | None) -> bool:
        """Is a lab with this row's node id this node's (None: a row from before nodes)?"""
        return node_id is None or self.node is None or node_id == self.node.node_id

    def lock_for(self, scenario_id: str) -> asyncio.Lock:
        """One in-process lock per scenario so its transitions never interleave (the
        caller keeps it referenced while it holds or awaits it)."""
        lock = self.locks.get(scenario_id)
        if lock is None:
            lock = self.locks[scenario_id] = asyncio.Lock()
        return lock

    async def announce(self, transition: Transition, *, expires_at: str | None = None) -> None:
        """Publish `forge.scenario.<state>`; de-duplicated by scenario and state.

        A final state's row has moved already, so nothing else would publish it again: when
        the bus refuses it (a failover), it is kept for the heartbeat to publish again until
        the bus takes it, as the sweeper's notices are; its `ended` notice frees the quota
        slot. BusUnavailable is raised all the same."""
        event = ScenarioTransitionV1.model_validate({
            "scenario_id": transition.scenario_id, "state": transition.to_state,
            "from_state": transition.from_state, "reason": transition.reason[:MAX_REASON],
            "at": transition.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tenant_id": transition.tenant_id, "subject": transition.subject,
            "track": transition.track, "expires_at": expires_at})
        final = transition.to_state in TERMINAL_STATES
        try:
            await publish_event(self.publisher, event,
                                msg_id=f"{transition.scenario_id}-{transition.to_state}")
            if final:
                if self.node is not None:
                    self.node.release(transition.scenario_id)
                await self.announce_ended(transition.scenario_id, transition.to_state)
        except BusUnavailable:
            if final and self.node is not None:
                self.node.unannounced[transition.scenario_id] = transition
            raise

    async def announce_end(self, transition: Transition) -> None:
        """`announce` a final move that is done (lab gone, row moved) to a caller who must
        hear that it is done: a notice the bus refuses is only logged, kept for the
        heartbeat to publish (`announce`), never an error for a finished action."""
        try:
            await self.announce(transition)
        except BusUnavailable as exc:
            log.warning("scenario %s %s; its notice is published again once the bus takes "
                        "it (%s)", transition.scenario_id, transition.to_state, exc)

    async def announce_ended(self, scenario_id: str, to_state: str,
                             again: str = "") -> PublishAck:
        """`forge.scenario.ended`: the slim notice learner-side services hear (no results).
        `again` marks a republish (`end_notices`): a new message id, so the bus does not
        drop it as a duplicate of the first notice it stored but that freed nothing."""
        suffix = f"-{again}" if again else ""
        return await publish_event(self.publisher,
                                   ScenarioEndedV1.model_validate(
                                       {"scenario_id": scenario_id, "state": to_state}),
                                   msg_id=f"{scenario_id}-ended-{to_state}{suffix}")
