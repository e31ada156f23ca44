"""Shared helpers for CLI commands: load settings (or exit 1 naming the problems), open the DB."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import typer
from pydantic_core import PydanticCustomError

from forge.cli.storage import refuse_unsafe, watch_new_root
from forge.config import variable_checks
from forge.config.settings import ConfigError, Settings, load_settings
from forge.config.storage_root import UnsafeStorage
from forge.plans import PlanCatalog, PlanError, load_plans
from forge.stack.lock import running_bus, running_services
from forge.store.db import Database
from forge.store.migrate import upgrade

if TYPE_CHECKING:
    from forge.bus.connection import BusConnection
    from forge.runtime.base import Runtime


def service_url(settings: Settings, variable: str, default: str) -> str:
    """Where an operator command calls a service: its variable (SPAWN_URL,
    ORCHESTRATOR_URL, SCOREBOARD_URL) when set, else the URL the `forge up` running on this
    storage root recorded for it, else ``default``. A `forge up` on other ports than the
    defaults is called there, and the operator token is not sent to whatever listens at a
    default port."""
    return (os.environ.get(variable) or running_services(settings.storage_root).get(variable)
            or default).rstrip("/")


def unreachable_next_step(settings: Settings, variable: str, otherwise: str = "") -> str:
    """What to do when the service an operator command calls does not answer: with neither
    ``variable`` set nor a `forge up` holding this storage root, the command called the
    default address, so most likely nothing runs (or it runs on another root or ports):
    say so; else ``otherwise`` (e.g. "ask another node")."""
    if os.environ.get(variable) or running_services(settings.storage_root):
        return otherwise
    return (f"; no forge up runs on {settings.storage_root} and {variable} is unset: start "
            f"the platform (forge up), or point this command at it (forge --storage ROOT of "
            f"its forge up, or {variable})")


def settings_or_exit(environ: Mapping[str, str] | None = None, *,
                     secrets: bool = True) -> Settings:
    """Settings as a service would load them (from ``environ``, default the process's); a
    bad environment exits 1 with every problem. Loading may create the storage root (dev
    secrets live there): that is announced. ``secrets=False`` for a command that uses no
    secret (image tooling, lab tests): none is read or generated, so an author's scratch
    folder gets no ./storage of dev secrets. A storage root another user owns or may write
    to exits 2 (`refuse_unsafe`)."""
    try:
        with watch_new_root():
            return load_settings(environ, secrets=secrets)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(1) from None
    except UnsafeStorage as exc:
        refuse_unsafe(exc)


def plans_or_exit(settings: Settings) -> PlanCatalog:
    """The plans of FORGE_PLANS_FILE, as the services load them; an unreadable or invalid
    file exits 1 with one line naming it and why (it was a PlanError traceback)."""
    try:
        return load_plans(settings.plans_file)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


def bus_settings(settings: Settings) -> Settings:
    """``settings`` for a command that talks to NATS: NATS_URL from the environment when set,
    else the NATS of the `forge up` running on this storage root (its embedded server
    listens on a port of its own, not the default 4222), else the default. A running `forge
    up` whose NATS cannot be used as recorded (its CA unreadable, say) exits 1 naming the
    problem: falling back to the default port would hand the password to whoever holds it."""
    from forge.services.common.logging import quiet_tls_eof_notice

    quiet_tls_eof_notice()  # the bus may speak TLS: no notice at each close on stderr
    if os.environ.get("NATS_URL"):
        return settings
    found = running_bus(settings.storage_root)
    if not found:
        return settings
    try:  # judged as the same variables in the environment would be
        update: dict[str, object] = {"nats_url": variable_checks.nats_url(found["NATS_URL"])}
        if "FORGE_NATS_REPLICAS" in found:
            update["nats_replicas"] = variable_checks.nats_replicas(found["FORGE_NATS_REPLICAS"])
        if "FORGE_NATS_CA" in found:
            update["nats_ca"] = variable_checks.nats_ca(found["FORGE_NATS_CA"])
    except PydanticCustomError as exc:
        problems = (exc.context or {}).get("problems") or [str(exc)]
        print(f"the NATS of the forge up running on {settings.storage_root} cannot be used: "
              + "; ".join(str(p) for p in problems), file=sys.stderr)
        raise typer.Exit(1) from None
    return settings.model_copy(update=update)


def open_db(settings: Settings) -> Database:
    """The state DB, migrated to the current schema (a new storage root it makes is announced)."""
    try:
        with watch_new_root(settings.storage_root):
            upgrade(settings.db_url)
            return Database(settings.db_url)
    except UnsafeStorage as exc:
        refuse_unsafe(exc)


@asynccontextmanager
async def scoreboard_bus(settings: Settings, name: str) -> AsyncIterator[BusConnection]:
    """A bus connection speaking as the scoreboard (result artifacts and evidence packs are
    the scoreboard's own on the bus); OSError when NATS cannot be reached, closed after."""
    from forge.bus.connection import BusConnection
    from forge.services.common.bus import bus_credentials, bus_streams

    settings = bus_settings(settings)
    conn = BusConnection(settings.nats_url, name,
                         credentials=bus_credentials(settings, "scoreboard"),
                         streams=bus_streams(settings), connect_timeout=3.0)
    try:
        if not await conn.start(wait=5.0):
            raise OSError("NATS is not reachable")
        yield conn
    finally:
        await conn.close()


def runtime_or_exit(settings: Settings) -> Runtime:
    """The configured runtime engine (``make_runtime``); one that cannot be made here (a
    bad engine setting, missing tools) exits 1 with ``runtime unavailable: …``."""
    from forge.runtime.base import RuntimeFault
    from forge.runtime.factory import make_runtime  # imported lazily: keeps `forge` fast

    try:
        return make_runtime(settings)
    except (ConfigError, RuntimeFault, ValueError) as exc:
        typer.echo(f"runtime unavailable: {exc}", err=True)
        raise typer.Exit(1) from None
