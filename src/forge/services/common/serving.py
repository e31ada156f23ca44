"""Run one service under uvicorn: validate config first, then bind, then shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from enum import StrEnum
from types import FrameType

import uvicorn
from fastapi import FastAPI

from forge import startup_gc
from forge.config.secrets import missing_nats_password, nats_password_given
from forge.config.settings import ConfigError, Settings, load_settings
from forge.second_grid import sleep_to_tick
from forge.services.common.listener import bind_listener, inherited_listener, worker_listeners
from forge.services.common.logging import configure_logging
from forge.services.common.request_head import BoundedHeadProtocol
from forge.services.common.workers import is_worker, serve_workers
from forge.services.common.ws_handshake import JsonRefusalWebSocketProtocol
from forge.store.migrate import StoreUnavailable, upgrade_at_start

log = logging.getLogger("forge.runner")


class ServiceName(StrEnum):
    """The three services, by their `forge serve` names."""

    spawn = "spawn"
    orchestrator = "orchestrator"
    scoreboard = "scoreboard"


@dataclass(frozen=True)
class ServiceEntry:
    """Where a service's app factory lives and which port it uses by default."""

    module: str
    label: str
    port: int


SERVICES = {
    ServiceName.spawn: ServiceEntry("forge.services.spawn.app", "spawn_service", 8082),
    ServiceName.orchestrator: ServiceEntry("forge.services.orchestrator.app", "orchestrator", 8083),
    ServiceName.scoreboard: ServiceEntry("forge.services.scoreboard.app", "scoreboard", 8086),
}


def _ignore(_sig: int, _frame: FrameType | None) -> None:
    """What an inherited SIG_IGN did, as a handler (see ``still_ignored_not_inherited``)."""


def still_ignored_not_inherited() -> None:
    """Turn an inherited SIG_IGN of SIGHUP or SIGQUIT into a handler that does nothing.

    The service still ignores them, but the programs it starts (a learner's terminal and
    commands, lab services) begin with the default action, as a handler does not survive
    exec while SIG_IGN does: under `nohup forge up` every lab process ignored hang-ups,
    and a terminal whose shell was killed stayed open, its slot held, until its idle
    timeout."""
    for sig in (signal.SIGHUP, signal.SIGQUIT):
        if signal.getsignal(sig) is signal.SIG_IGN:
            signal.signal(sig, _ignore)


def build_service(name: ServiceName, settings: Settings) -> FastAPI:
    """Build the named service's app."""
    module = importlib.import_module(SERVICES[name].module)
    app: FastAPI = module.build_app(settings)
    return app


def uvicorn_config(app: FastAPI, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """The server settings of a Forge service; WebSocket frames are capped by the server
    itself (FORGE_WS_MAX_MESSAGE_BYTES) before a message is assembled for the app, and a
    request's head at MAX_HEAD_BYTES (forge.services.common.request_head); a refused
    WebSocket opening handshake is answered in the API's error shape
    (forge.services.common.ws_handshake)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
        ws_max_size=settings.ws_max_message_bytes,
        http=BoundedHeadProtocol,
        ws=JsonRefusalWebSocketProtocol,
    )


DRAIN_S = 0.5
TICK_S = 1.0


class DrainingServer(uvicorn.Server):
    """uvicorn, with two changes.

    On shutdown it stops accepting first and gives the connections it has just accepted a
    moment to deliver their request before closing idle ones: uvicorn alone closes a
    connection whose request bytes have not been read yet, which resets it (measured: one
    spawn request in a rotation drill). With a held listening socket, what arrives after
    the stop waits in the backlog for the next incarnation.

    Idle, it wakes once a second (the Date header's resolution) and at once on a stop
    signal, where uvicorn polls for the stop ten times a second: measured 0.20 % of a core
    per idle service against 0.03 %.
    """

    _stop: asyncio.Future[None] | None = None

    async def main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = stop = loop.create_future()
        while not await self.on_tick(0):  # tick 0: refreshes the Date header every time
            await sleep_to_tick(TICK_S, stop)  # the WAL check's tick too (second_grid)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler: uvicorn's (sets should_exit), then wake main_loop now."""
        super().handle_exit(sig, frame)
        stop = self._stop
        if stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                stop.get_loop().call_soon_threadsafe(_settle, stop)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in getattr(self, "servers", []):
            server.close()
        await asyncio.sleep(DRAIN_S)
        await super().shutdown(sockets=sockets)


def _settle(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        stop.set_result(None)


class StoreRefused(Exception):
    """The state store cannot be used by this release (its one-line reason, from
    `forge.store.migrate`: not a database, a newer schema, a migration refused)."""


def _migrate_store(url: str) -> None:
    """Bring the store to this release's schema (as the app's start would) before uvicorn
    runs, where its errors were logged under a traceback of dozens of frames: a store this
    release cannot use raises StoreRefused, one that cannot be reached now
    StoreUnavailable, each with its one-line reason. Anything else is left to the app's
    start, as before."""
    try:
        upgrade_at_start(url)
    except StoreUnavailable:
        raise
    except Exception as exc:
        util = sys.modules.get("alembic.util")  # loaded only when the store needed it
        if util is not None and isinstance(exc, util.CommandError):
            raise StoreRefused(str(exc)) from None


def serve(name: ServiceName, host: str, port: int | None) -> bool:
    """Load config (raises ConfigError before any port is bound), then serve until signalled.

    Returns False when the service could not start (e.g. its lifespan startup failed).
    """
    try:
        settings = load_settings()
    except ConfigError as exc:  # with its NATS password, if that is missing too: one list
        if exc.env_label in ("dev", "development") or nats_password_given(name.value,
                                                                           os.environ):
            raise
        raise ConfigError(exc.env_label,
                          [*exc.problems, missing_nats_password(name.value)]) from None
    entry = SERVICES[name]
    configure_logging(entry.label, settings.secret_values())
    for warning in settings.warnings:
        log.warning(warning)
    # Its NATS password next (ConfigError naming the variable), as the runbook says: before
    # the port, so a missing one is never hidden behind "cannot listen".
    settings.nats_password(name.value)
    # The port before anything else: a taken port is one clear error, nothing half-started.
    inherited = inherited_listener()
    sock = inherited or bind_listener(host, entry.port if port is None else port)
    try:  # the store's schema next: one line for a store it cannot use, not a traceback
        _migrate_store(settings.db_url)
    except Exception as exc:
        log.error("%s refused to start: %s", entry.label, exc)
        sock.close()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    if name is ServiceName.spawn and settings.spawn_workers > 1 and not is_worker():
        # A socket handed down (forge up) outlives this process, so its connections wait
        # through a restart: the workers share it. Bound here, each worker gets its own.
        count = settings.spawn_workers
        socks = [sock] * count if inherited else worker_listeners(sock, count)
        return serve_workers(name.value, socks)
    try:
        startup_gc.hold()  # until the app is built: see forge.startup_gc
        app = build_service(name, settings)
    except Exception as exc:
        startup_gc.release()  # an in-process caller goes on with the collector on
        log.error("%s refused to start: %s", entry.label, exc)
        sock.close()
        raise
    config = uvicorn_config(app, settings, bound_host, bound_port)
    log.info("starting %s on %s:%s (FORGE_ENV=%s)", entry.label, bound_host, bound_port,
             settings.env.value)
    server = DrainingServer(config)
    # A stop signal from here on is the server's: one that lands before uvicorn installs its
    # own handlers (during the collection below) still stops it, where a no-op handler lost
    # it and the service ran on. uvicorn re-raises the stop signal after its graceful
    # shutdown into the handlers it found, this one: a clean exit.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, server.handle_exit)
    still_ignored_not_inherited()
    # What startup built lives as long as the process: keep it out of every later
    # collection, including the full one at interpreter exit (measured: a stop took
    # ~0.45 s longer after "Finished server process" without it). It is frozen without
    # a collection first: with the collector held, start-up left under 1,000 objects of
    # garbage, and a full pass over the ~150,000 it made cost 0.14 s of CPU.
    startup_gc.release()
    server.run(sockets=[sock])
    return server.started
