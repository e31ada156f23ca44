"""Orchestrator app assembly: policy pin, runtime, consumers, reaper, routes, readiness."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from fastapi import FastAPI
from prometheus_client import Counter

from forge.bus import DeadLetterHook, DurableConsumer, Event, Publisher, Reject
from forge.bus.connection import BusConnection
from forge.bus.consumer_metrics import register_consumer_metrics
from forge.bus.contracts import ContractError, ScenarioSubmitV1, decode_as
from forge.bus.nodes import NodeRegistry
from forge.bus.permissions import BusCredentials
from forge.bus.subjects import (
    DURABLE_ORCHESTRATOR_SPAWN,
    DURABLE_ORCHESTRATOR_SUBMIT,
    NODE_STREAM,
    SCENARIO_SUBMIT,
    SPAWN_REQUESTED,
    STREAM,
    node_submit_durable,
    node_submit_subject,
)
from forge.config.settings import Settings
from forge.lifecycle.states import IllegalTransition
from forge.lifecycle.store import ScenarioNotFound, load
from forge.plans import load_plans
from forge.policy import check_pinned_hash, make_policy_engine
from forge.runtime.base import Runtime
from forge.runtime.factory import make_runtime
from forge.services.common.app import create_app, make_context, storage_writable
from forge.services.common.bus import bus_credentials, bus_streams, jetstream_check
from forge.services.common.housekeeping import Housekeeping
from forge.services.common.ops_routes import add_subscriber_routes
from forge.services.common.readiness import CheckFailed
from forge.services.orchestrator import (
    node_routes,
    operator_routes,
    routes,
    task_checks,
    terminal,
)
from forge.services.orchestrator.grade_lab import complete
from forge.services.orchestrator.launcher import handle_spawn
from forge.services.orchestrator.node import LabNode, start_node
from forge.services.orchestrator.pool_metrics import register_pool_metrics
from forge.services.orchestrator.reaper import reconcile, resume_after_restart, run_reaper
from forge.services.orchestrator.state import OrchestratorState
from forge.services.orchestrator.sweeper import heartbeat_stale, run_heartbeats
from forge.services.orchestrator.warm_pools import start_warm_pools, stop_warm_pools
from forge.store.consumed_tokens import SqlReplayStore
from forge.store.data_version import DataVersion
from forge.store.failed_events import record_failed_event
from forge.templates.registry import TemplateRegistry

NAME = "orchestrator"
DEFAULT_PORT = 8083
SHUTDOWN_BUDGET_S = 12.0  # a stop's own budget (forge up kills a child after 15 s)
log = logging.getLogger("forge.orchestrator")


def _consumers(state: OrchestratorState, url: str, credentials: BusCredentials,
               **options: float) -> list[DurableConsumer]:
    db = state.ctx.db
    streams = bus_streams(state.settings)
    options = {"ack_wait": state.settings.bus_ack_wait_s, **options}

    def dead_letter(durable: str) -> DeadLetterHook:
        async def hook(event: Event, error: str) -> None:
            await state.blocking(lambda: record_failed_event(
                db, consumer=durable, subject=event.subject, msg_id=event.msg_id,
                payload=event.raw.decode("utf-8", "replace"), error=error,
                scenario_id=event.data.get("scenario_id"), attempts=event.num_delivered))
        return hook

    async def on_spawn(event: Event) -> None:
        await handle_spawn(state, event)

    async def on_submit(event: Event) -> None:
        # A node's own subject carries the same contract as `forge.scenario.submit`.
        subject = SCENARIO_SUBMIT if event.subject.startswith(SCENARIO_SUBMIT) else event.subject
        try:
            submit = decode_as(ScenarioSubmitV1, subject, event.raw)
        except ContractError as exc:
            raise Reject(str(exc)) from None
        with suppress(ScenarioNotFound, IllegalTransition):
            row = await state.read(load, db, submit.scenario_id)
            if not state.holds(row.node_id):
                # Another node holds this lab (spawn_service sends its submits to that node's
                # own subject): never grade it here, against a runtime that lacks it.
                raise Reject(f"lab runs on node {row.node_id}; its submits go to "
                             f"{node_submit_subject(str(row.node_id))}")
            await complete(state, submit.scenario_id, submit.reason,
                           submitted_at=event.published_at)

    node_durable = node_submit_durable(state.settings.node_id)
    return [
        DurableConsumer(url, durable=DURABLE_ORCHESTRATOR_SPAWN, subjects=[SPAWN_REQUESTED],
                        handler=on_spawn, on_dead_letter=dead_letter(DURABLE_ORCHESTRATOR_SPAWN),
                        credentials=credentials, streams=streams, gate=state.node,
                        concurrency=8, **options),  # type: ignore[arg-type]
        DurableConsumer(url, durable=node_durable, stream=NODE_STREAM,
                        subjects=[node_submit_subject(state.settings.node_id)],
                        handler=on_submit, on_dead_letter=dead_letter(node_durable),
                        credentials=credentials, streams=streams,
                        concurrency=4, **options),  # type: ignore[arg-type]
        DurableConsumer(url, durable=DURABLE_ORCHESTRATOR_SUBMIT, subjects=[SCENARIO_SUBMIT],
                        handler=on_submit,
                        on_dead_letter=dead_letter(DURABLE_ORCHESTRATOR_SUBMIT),
                        credentials=credentials, streams=streams,
                        # Grading keeps its message with "in progress" heartbeats (every
                        # ack_wait/3), so FORGE_BUS_ACK_WAIT_S need not cover a long grading.
                        concurrency=4, **options),  # type: ignore[arg-type]
    ]


async def _nats_check(state: OrchestratorState) -> str:
    down = [c.durable for c in state.consumers if not c.connected]
    if not state.publisher.connected:
        down.append("publisher")
    if down:
        raise CheckFailed("NATS not connected: " + ", ".join(down))
    js = await jetstream_check(state.publisher, STREAM)
    pending = {c.durable: c.status()["pending"] for c in state.consumers}
    return f"subscribers connected; {js}; pending {pending}"


def _policy_check(state: OrchestratorState) -> str:
    state.engine.probe()
    return f"reachable; policy hash {state.engine.policy_hash}"


def _node_check(state: OrchestratorState) -> str:
    node = state.node
    if node is None:
        return "no lab node"
    if node.fenced:
        raise CheckFailed(f"lab node {node.node_id} fenced: another process claimed this "
                          "FORGE_NODE_ID; it takes no more work")
    if node.revision is None:
        raise CheckFailed(f"lab node {node.node_id} not registered yet (node registry "
                          "unreachable)")
    every = state.settings.node_heartbeat_s
    stale = heartbeat_stale(node, every)
    if stale is not None:
        raise CheckFailed(f"lab node {node.node_id}: heartbeats failing, last successful "
                          f"one {stale:.0f}s ago (every {every:g}s); last error: "
                          f"{node.beat_error}")
    return (f"{node.node_id}: {len(node.held)}/{state.settings.node_capacity_labs} labs"
            f"{', draining' if node.draining else ''}{', lease holder' if node.leader else ''}")


def _runtime_check(runtime: Runtime) -> str:
    problems = runtime.check()
    if problems:
        raise CheckFailed("; ".join(problems))
    return "usable"


def build_app(
    settings: Settings, *, runtime: Runtime | None = None, reaper_interval_s: float = 5.0,
    consumer_options: dict[str, float] | None = None,
) -> FastAPI:
    """The orchestrator app. Refuses to build when OPA_POLICY_HASH pins another policy."""
    engine = make_policy_engine(settings.opa_url, settings.policies_dir)
    loaded_hash = check_pinned_hash(settings.opa_policy_hash, engine.policy_hash)
    log.info("policy bundle hash %s (%s)", loaded_hash,
             "pinned by OPA_POLICY_HASH" if settings.opa_policy_hash else "not pinned")
    ctx = make_context(NAME, settings)
    credentials = bus_credentials(settings, "orchestrator")
    runtime = runtime or make_runtime(settings)
    # The runtime's own slot count too (unset, one per core plus one), not only the setting.
    slots = max(int(getattr(runtime, "build_slots", 0) or 0), settings.build_slots)
    state = OrchestratorState(
        ctx=ctx,
        registry=TemplateRegistry.load(settings.templates_dir),
        catalog=load_plans(settings.plans_file),
        engine=engine,
        runtime=runtime,
        publisher=Publisher(settings.nats_url, name="forge-orchestrator",
                            credentials=credentials, streams=bus_streams(settings)),
        replay=SqlReplayStore(ctx.db),
        # More threads than build slots, so FORGE_BUILD_SLOTS above 64 is not capped here.
        builds=ThreadPoolExecutor(max(64, slots + 16), thread_name_prefix="forge-build"),
    )
    # The heartbeat's own connection leaves a hung server (its socket open, no answer) well
    # within the grace period: it pings often while its server is silent (stale after 4
    # unanswered pings; `dial.ping_due`), its requests wait a quarter of the grace period
    # at most, and a heartbeat that times out moves it to the next server at once
    # (`sweeper.run_heartbeats`).
    grace = settings.node_grace_s
    node_bus = BusConnection(settings.nats_url, "forge-orchestrator-node",
                             streams=bus_streams(settings), credentials=credentials,
                             ping_interval=max(0.5, grace / 8))
    state.node = LabNode(settings=settings, registry=state.registry, bus=node_bus,
                         store_version=DataVersion(ctx.db.url),
                         kv=NodeRegistry(lambda: node_bus.jetstream(max(2.0, grace / 4)),
                                         replicas=settings.nats_replicas, grace_s=grace))
    state.consumers = _consumers(state, settings.nats_url, credentials,
                                 **(consumer_options or {}))
    register_consumer_metrics(ctx.metrics.registry, lambda: state.consumers)
    register_pool_metrics(ctx.metrics.registry, lambda: state.runtime.pool_report())
    state.republished = Counter(
        "forge_ended_notices_republished", "Ended notices published again for scenarios "
        "whose quota slot was still taken a minute after their end", registry=ctx.metrics.registry)
    ctx.readiness.add("storage", lambda: storage_writable(settings.storage_root))
    ctx.readiness.add("policy", lambda: _policy_check(state))
    ctx.readiness.add("nats", lambda: _nats_check(state))
    ctx.readiness.add("runtime", lambda: _runtime_check(state.runtime))
    ctx.readiness.add("node", lambda: _node_check(state))
    tasks: list[asyncio.Task[None]] = []

    housekeeping = Housekeeping(ctx, {"replay_jtis": state.replay.purge_expired})

    async def start() -> None:
        await state.publisher.start(wait=3.0)
        # The node registers before any consumer pulls: a second process under a live
        # node's FORGE_NODE_ID stops here (NodeIdInUse), before touching that node's labs.
        await node_bus.start(wait=3.0)
        assert state.node is not None
        await start_node(state.node, timeout=10.0 + 4 * settings.node_heartbeat_s)
        tasks.append(asyncio.create_task(run_heartbeats(state)))  # before a long reconcile
        try:
            report = await state.blocking(reconcile, state)
        except Exception:
            log.exception("reconciliation at start failed; the reaper keeps running")
        else:  # finishing launches and gradings may take a while: not before readiness
            tasks.append(asyncio.create_task(resume_after_restart(state, report)))
        await start_warm_pools(state)  # after reconcile removed a previous run's pool labs
        for consumer in state.consumers:
            await consumer.start(wait=3.0)
        tasks.append(asyncio.create_task(run_reaper(state, reaper_interval_s)))
        tasks.append(asyncio.create_task(housekeeping.run(settings.housekeeping_interval_s)))

    async def stop() -> None:
        # First: launches waiting for a build slot (a burst) then end at once instead of
        # building, one slot at a time, labs nobody watches while the consumers' grace and
        # the cancelled launches wait for them; their scenarios stay launching for the next
        # start to resume. Builds under way finish.
        began = time.monotonic()
        state.runtime.stop_builds()
        for task in tasks:
            task.cancel()
        for consumer in state.consumers:
            await consumer.stop()
        # The node's record stays (marked stopped): its labs live on, and a restart under
        # the same id within the grace period takes them back; one that does not is lost.
        if state.node is not None:
            with suppress(Exception):
                await asyncio.wait_for(state.node.stop(), 3.0)
        await node_bus.close()
        await state.publisher.close()
        if state.reaper_version is not None:  # the reaper's commit counter (SQLite)
            state.reaper_version.close()
        await state.terminal_sessions.close_all()  # their shells end with the service
        await stop_warm_pools(state)
        # Last, within what is left of the shutdown budget (the supervisor kills a stop
        # that takes longer): the cancelled resumes end once their builds have, a stopped
        # one putting its launch attempt back; a build that hangs is not waited for.
        left = SHUTDOWN_BUDGET_S - (time.monotonic() - began)
        if tasks and left > 0:
            await asyncio.wait(tasks, timeout=left)
        state.executor.shutdown(wait=False, cancel_futures=True)
        state.builds.shutdown(wait=False, cancel_futures=True)

    ctx.startup.append(start)
    ctx.shutdown.append(stop)
    app = create_app(ctx)
    app.state.orchestrator = state
    app.include_router(routes.router)
    app.include_router(terminal.router)
    app.include_router(operator_routes.router)
    app.include_router(node_routes.router)
    app.include_router(task_checks.router)
    add_subscriber_routes(app, ctx, lambda: state.consumers)
    return app
