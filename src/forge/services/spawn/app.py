"""spawn_service app assembly: routes, readiness, and the bus parts it runs."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import FastAPI

from forge.bus.subjects import STREAM
from forge.classroom.stranded_attempts import STRANDED_AFTER, settle_stranded
from forge.config.settings import Settings
from forge.entitlements.grants import EntitlementsFileError, read_file_grants
from forge.policy import PolicyHashMismatch, check_pinned_hash, make_policy_engine
from forge.quotas.limiter import purge_slots, purge_windows
from forge.services.common.app import create_app, make_context, storage_writable
from forge.services.common.bus import bus_credentials, bus_streams, jetstream_check
from forge.services.common.housekeeping import Housekeeping
from forge.services.common.http_client import SharedHttpClient
from forge.services.common.openapi import document_enums
from forge.services.common.ops_routes import add_subscriber_routes
from forge.services.common.readiness import CheckFailed
from forge.services.common.workers import runs_housekeeping
from forge.services.spawn import (
    access,
    assignment_routes,
    cohort_routes,
    hint_routes,
    lab_routes,
    routes,
    terminal,
    tracks,
)
from forge.services.spawn.lifecycle import lifecycle_consumer
from forge.services.spawn.operator_keys import OperatorKeys
from forge.services.spawn.peers import paced_peer_keys
from forge.services.spawn.state import SpawnState, build_state
from forge.services.spawn.web import install as install_web
from forge.store import idempotency

log = logging.getLogger("forge.spawn")
NAME = "spawn_service"
DEFAULT_PORT = 8082


RATE_WINDOW_KEEP = timedelta(minutes=10)
SLOT_KEEP = timedelta(hours=1)

async def _nats_check(state: SpawnState) -> str:
    publisher_ok = state.publisher.connected
    consumer_ok = state.lifecycle is not None and state.lifecycle.connected
    if not (publisher_ok and consumer_ok):
        parts = [] if publisher_ok else ["publisher"]
        parts += [] if consumer_ok else ["lifecycle subscriber"]
        raise CheckFailed("NATS not connected: " + ", ".join(parts))
    js = await jetstream_check(state.publisher, STREAM)
    return f"publisher and lifecycle subscriber connected; {js}"


def _store_check(state: SpawnState) -> str:
    state.ctx.db.ping()
    if state.entitlements_file is not None:
        try:  # read as a spawn reads it: a file that is there but unusable fails too
            read_file_grants(state.entitlements_file)
        except EntitlementsFileError as exc:
            raise CheckFailed(f"ENTITLEMENTS_FILE: {exc}") from None
    return "reachable"


def _receipt_key(state: SpawnState) -> str:
    if not state.settings.receipt.current:
        raise CheckFailed("RECEIPT_HMAC_SECRET not loaded")
    return f"kid {state.settings.receipt.current_kid}"


def _policy_check(state: SpawnState, built: tuple[str, str] | None = None) -> str:
    """The policy bundle is loaded and is the pinned one (OPA_POLICY_HASH, when set).
    `built` is (hash, detail) made once at startup, where the pin was checked: answered as
    is while the engine still has that hash; another engine is checked against the pin.
    Cheap: no evaluation and no call to OPA (an outage shows on the first spawn as 503
    policy_unavailable, and in the orchestrator's `policy` check)."""
    if state.policy is None:
        raise CheckFailed("policy bundle not loaded")
    if built is not None and state.policy.policy_hash == built[0]:
        return built[1]
    try:
        loaded = check_pinned_hash(state.settings.opa_policy_hash, state.policy.policy_hash)
    except PolicyHashMismatch as exc:
        raise CheckFailed(str(exc)) from None
    pinned = "pinned by OPA_POLICY_HASH" if state.settings.opa_policy_hash else "not pinned"
    return f"policy hash {loaded} ({pinned})"


def build_app(settings: Settings) -> FastAPI:
    """The spawn_service FastAPI app; plans and templates load now, so errors stop startup."""
    # The assignment gate's engine (forge.assignment): the same bundle and pin rule as the
    # orchestrator's, so a bundle other than the reviewed one never decides windows here.
    # No decision cache: every admission input carries its request_id and now_s, so no
    # two are alike and a cache would only cost a digest and memory per request.
    engine = make_policy_engine(settings.opa_url, settings.policies_dir, cache_size=0)
    loaded_hash = check_pinned_hash(settings.opa_policy_hash, engine.policy_hash)
    pinned = "pinned by OPA_POLICY_HASH" if settings.opa_policy_hash else "not pinned"
    log.info("policy bundle hash %s (%s)", loaded_hash, pinned)
    policy_detail = f"policy hash {loaded_hash} ({pinned})" + (
        "; the bundle OPA at OPA_URL evaluates is not verified here" if settings.opa_url
        else "")
    ctx = make_context(NAME, settings)
    state = build_state(ctx)
    state.policy = engine
    state.lifecycle = lifecycle_consumer(settings.nats_url, ctx.db,
                                         credentials=bus_credentials(settings, "spawn"),
                                         streams=bus_streams(settings),
                                         ack_wait=settings.bus_ack_wait_s)
    ctx.readiness.add("storage", lambda: storage_writable(settings.storage_root))
    ctx.readiness.add("entitlement_store", lambda: _store_check(state))
    ctx.readiness.add("receipt_key", lambda: _receipt_key(state))
    ctx.readiness.add("plans", lambda: f"{len(state.catalog.names)} plans, tracks "
                      + ", ".join(state.known_tracks))
    ctx.readiness.add("nats", lambda: _nats_check(state))
    built = (engine.policy_hash, policy_detail)
    ctx.readiness.add("policy", lambda: _policy_check(state, built))
    http = SharedHttpClient()  # the app's one outgoing client: web backend and peer checks
    keys = state.operator_keys = ctx.operator_keys = OperatorKeys(settings, http)
    state.peer_keys = paced_peer_keys(settings, http, keys.note)
    ctx.readiness.add("peer_keys", state.peer_keys.check)

    housekeeping = Housekeeping(ctx, {
        "idempotency_records": lambda now: idempotency.purge(ctx.db, now),
        "rate_windows": lambda now: purge_windows(ctx.db, now - RATE_WINDOW_KEEP),
        "quota_slots": lambda now: purge_slots(ctx.db, now - SLOT_KEEP),
        "replay_jtis": state.replay.purge_expired,
        "assignment_attempts": lambda now: settle_stranded(ctx.db, now - STRANDED_AFTER),
    })
    app_tasks: list[asyncio.Task[None]] = []

    async def start_bus() -> None:
        # Wait briefly so a healthy platform is ready at once; an outage only shows in /readyz.
        await state.publisher.start(wait=3.0)
        assert state.lifecycle is not None
        await state.lifecycle.start(wait=3.0)
        if runs_housekeeping():  # worker 1 only under FORGE_SPAWN_WORKERS
            app_tasks.append(asyncio.create_task(
                housekeeping.run(settings.housekeeping_interval_s)))

    async def stop_bus() -> None:
        for task in app_tasks:
            task.cancel()
        if state.lifecycle is not None:
            await state.lifecycle.stop()
        await state.publisher.close()
        await asyncio.to_thread(state.answers.drain)  # answers queued but not yet stored

    ctx.startup.append(start_bus)
    ctx.shutdown.append(stop_bus)
    ctx.shutdown.append(http.close)
    app = create_app(ctx)
    app.state.spawn = state
    app.state.housekeeping = housekeeping
    app.include_router(routes.router)
    document_enums(app, {("SpawnBody", "track"): list(state.known_tracks),
                         ("CheckoutBody", "plan"): list(state.catalog.names)})
    app.include_router(access.router)
    app.include_router(tracks.router)
    app.include_router(terminal.router)
    app.include_router(lab_routes.router)
    app.include_router(hint_routes.router)
    app.include_router(cohort_routes.router)
    app.include_router(assignment_routes.router)
    # learner and operator pages (forge.services.spawn.web), on the templates loaded above
    install_web(app, settings, http, templates=state.registry)
    add_subscriber_routes(app, ctx, lambda: [state.lifecycle] if state.lifecycle else [])
    app.state.http = http
    return app
