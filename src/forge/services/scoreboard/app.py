"""scoreboard app assembly: readiness, the completion consumer, the finalized publisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from forge.bus import Publisher, register_consumer_metrics
from forge.bus.subjects import STREAM
from forge.config.settings import ConfigError, Settings
from forge.identity.lti_config import LtiConfigError, load_lti
from forge.services.common.app import create_app, make_context, storage_writable
from forge.services.common.artifact_stores import ObjectStoreArtifactStore, make_artifact_store
from forge.services.common.bus import bus_credentials, bus_streams, jetstream_check
from forge.services.common.http_client import SharedHttpClient
from forge.services.common.readiness import CheckFailed
from forge.services.scoreboard import (
    credential_routes,
    operator_facts,
    recording_routes,
    routes,
    summary_routes,
)
from forge.services.scoreboard.leaderboard import ScoreIndex
from forge.services.scoreboard.lti_grades import GradePoster
from forge.services.scoreboard.retention_runs import RetentionRuns
from forge.services.scoreboard.scoring import Scorer
from forge.services.scoreboard.state import ScoreboardState
from forge.services.scoreboard.verifier_keys import verifier_keys
from forge.signing.keystore import NoSigningKey
from forge.templates.registry import TemplateRegistry

NAME = "scoreboard"
DEFAULT_PORT = 8086
SEAL_SWEEP_S = 60.0  # how often verdicts a crash left unsealed are looked for
READINESS_CHECKS = ("config", "store", "storage", "signing_key", "templates", "nats")
log = logging.getLogger("forge.scoreboard")


def _signing_key(state: ScoreboardState) -> str:
    try:
        key = state.scorer.keyring.current()
    except NoSigningKey as exc:
        raise CheckFailed(f"{exc}; scoring is paused, completions stay queued") from None
    return f"Ed25519 key {key.key_id} loaded"


async def _storage(state: ScoreboardState) -> str:
    """The storage root takes a file write, and no completion waits for room to be scored
    (a verdict needs more room than the probe file; one another replica scored meanwhile
    waits no more)."""
    detail = storage_writable(state.settings.storage_root)
    if not state.scorer.out_of_room:  # the usual answer, asked at every readiness poll
        return detail
    try:
        waiting = await asyncio.to_thread(state.scorer.waiting_for_room)
    except SQLAlchemyError:  # the store check says why; the notes stand meanwhile
        waiting = dict(state.scorer.out_of_room)
    if waiting:
        why = next(iter(waiting.values()))
        raise CheckFailed(f"{len(waiting)} completion(s) wait for room on the storage root "
                          f"{state.settings.storage_root} ({why}); free space there and "
                          "they are scored by themselves")
    return detail


async def _nats(state: ScoreboardState, grades: GradePoster | None) -> str:
    down = [] if state.consumer is not None and state.consumer.connected else [
        "completion subscriber"]
    if grades is not None and not grades.consumer.connected:
        down.append("LTI grade subscriber")
    if not state.publisher.connected:
        down.append("publisher")
    if down:
        raise CheckFailed("NATS not connected: " + ", ".join(down))
    js = await jetstream_check(state.publisher, STREAM)
    return ("completion subscriber" + (", LTI grade subscriber" if grades is not None else "")
            + f" and publisher connected; {js}")


def build_app(settings: Settings, *, pause_retry_s: float | None = None,
              lti_poll_s: float | None = None, **consumer_options: Any) -> FastAPI:
    """The scoreboard FastAPI app; templates load now, so a bad template stops startup.

    `consumer_options` (max_deliver, backoff, ...) tune the durable consumer;
    `pause_retry_s` is how soon a paused completion (no key, storage) is retried
    (default: FORGE_SCOREBOARD_PAUSE_RETRY_S); `lti_poll_s` how often owed LTI grades are
    looked at besides when a verdict owes one (default 5 s).
    """
    ctx = make_context(NAME, settings)
    registry = TemplateRegistry.load(settings.templates_dir)
    publisher = Publisher(settings.nats_url, name="forge-scoreboard-pub",
                          credentials=bus_credentials(settings, "scoreboard"),
                          streams=bus_streams(settings))
    artifacts = make_artifact_store(settings, publisher.connection)
    state = ScoreboardState(
        ctx=ctx, scorer=Scorer(settings, registry, bus=publisher.connection,
                               artifacts=artifacts, db=ctx.db),
        publisher=publisher,
        index=ScoreIndex(artifacts), consumer_options=dict(consumer_options),
        pause_retry_s=settings.scoreboard_pause_retry_s if pause_retry_s is None
        else pause_retry_s)
    consumer = state.make_consumer()
    grades: GradePoster | None = None
    if settings.lti_file is not None:  # LTI grade passback (issue 18 item 4)
        try:
            grades = GradePoster(settings, ctx.db, load_lti(settings.lti_file),
                                 artifacts=artifacts,
                                 **({} if lti_poll_s is None else {"poll_s": lti_poll_s}))
        except LtiConfigError as exc:
            raise ConfigError(settings.env.value, [str(exc)]) from None
    ctx.readiness.add("storage", lambda: _storage(state))
    ctx.readiness.add("signing_key", lambda: _signing_key(state))
    ctx.readiness.add("templates", lambda: f"{len(registry)} templates loaded")
    ctx.readiness.add("nats", lambda: _nats(state, grades))
    http = SharedHttpClient()  # asks the orchestrator's key ids (peer_keys)
    peer_keys = verifier_keys(settings, http)
    ctx.readiness.add("peer_keys", peer_keys.check)
    ctx.shutdown.append(http.close)
    register_consumer_metrics(ctx.metrics.registry, lambda: [
        c for c in (state.consumer, grades.consumer if grades else None) if c is not None])

    async def sweep_unsealed() -> None:
        """Finish verdicts a crash left unsealed: at start, then every SEAL_SWEEP_S."""
        while True:
            try:
                await asyncio.to_thread(state.scorer.seal_unsealed)
            except Exception:  # logged; the next sweep tries again
                log.exception("sweep of unsealed verdicts failed")
            await asyncio.sleep(SEAL_SWEEP_S)

    sweeper: list[asyncio.Task[None]] = []
    retention = RetentionRuns(settings.storage_root, artifacts, state.scorer.keyring,
                              ctx.metrics.registry)

    async def start() -> None:
        if isinstance(artifacts, ObjectStoreArtifactStore):
            artifacts.bind(asyncio.get_running_loop())
        if settings.env.is_dev:
            key, created = await asyncio.to_thread(state.scorer.keyring.ensure)
            if created:
                log.warning("dev mode: generated signing key %s in %s (never in production)",
                            key.key_id, state.scorer.keyring.directory)
        sweeper.append(asyncio.create_task(sweep_unsealed()))
        # Only where this scoreboard holds the results and their holds: with the Object
        # Store several replicas share, each with its own holds, `forge retention cleanup`.
        if settings.retention_interval_s > 0 and settings.artifact_store == "filesystem":
            sweeper.append(asyncio.create_task(retention.run(settings.retention_interval_s)))
        await state.publisher.start(wait=3.0)
        await consumer.start(wait=3.0)
        if grades is not None:
            await grades.start()

    async def stop() -> None:
        for task in sweeper:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if grades is not None:
            await grades.stop()
        if state.consumer is not None:
            await state.consumer.stop()
        await state.publisher.close()

    ctx.startup.append(start)
    ctx.shutdown.append(stop)
    app = create_app(ctx)
    app.state.scoreboard = state
    app.state.retention = retention
    app.state.lti_grades = grades
    app.include_router(routes.router)
    app.include_router(operator_facts.router)
    app.include_router(recording_routes.router)
    app.include_router(credential_routes.router)
    app.include_router(summary_routes.router)
    return app
