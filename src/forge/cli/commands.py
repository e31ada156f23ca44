"""Registry of `forge` command groups, imported only when one is run.

Each group lives in its own module under forge.cli and exposes either `app` (a Typer
sub-app) or `register(app)` for top-level commands. The root group resolves a command's
module when that command is invoked, so `forge serve` does not import the scoreboard's
scoring code, and every short-lived `forge …` process starts faster; `forge --help`
still lists them all.
"""

from __future__ import annotations

import importlib

import typer
from typer import _click as click  # Typer vendors click: its commands are of these types
from typer.core import TyperGroup

# command name -> its module under forge.cli, in the order `forge --help` lists them.
COMMANDS: dict[str, str] = {
    "serve": "serve", "config": "config_check", "verify": "verify", "up": "up",
    "demo": "demo", "secrets": "secrets", "apikey": "apikey",
    "entitlements": "entitlements", "receipt": "receipt", "template": "template",
    "policy": "policy", "keys": "keys", "audit": "audit", "nats": "nats",
    "completions": "completions", "retention": "retention", "scenarios": "scenarios",
    "nodes": "nodes", "runtime": "runtime", "artifacts": "artifacts", "image": "image",
    "lab": "lab", "credential": "credential", "verify-credential": "verify_credential",
    "lti": "lti", "roles": "roles", "store": "state_store",
}


def load_command(name: str) -> click.Command:
    """The click command `name`, built from its module (KeyError when there is none)."""
    module = importlib.import_module(f"forge.cli.{COMMANDS[name]}")
    holder = typer.Typer()
    holder.callback()(lambda: None)  # a callback makes `holder` a group even with one command
    register = getattr(module, "register", None)
    if register is not None:
        register(holder)
    else:
        holder.add_typer(module.app, name=name)
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    command = group.commands.get(name)
    if command is None:
        raise KeyError(name)
    return command


NEARLY_FULL = 1 << 20  # bytes free below which a store's "disk I/O error" is a full disk


def _storage_full() -> bool:
    """Whether the current storage root's file system has (next to) no room left."""
    from forge.cli.storage import current_storage_root
    from forge.disk_room import short_of_room

    return short_of_room(current_storage_root(), NEARLY_FULL)


def refused_for_room(exc: Exception) -> str | None:
    """The one line to print for a command that failed on a full disk or store, or None
    for any other failure (which keeps its traceback: it is a bug to report)."""
    # Imported here, on a failure only: the store's modules pull in SQLAlchemy, which
    # every command would otherwise pay for at start.
    from forge.store.busy import disk_out_of_room, store_error_text, store_out_of_room

    if isinstance(exc, OSError) and disk_out_of_room(exc):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"the disk is full{where}: {exc.strerror}"
    if type(exc).__module__.startswith("sqlalchemy"):
        from sqlalchemy.exc import DBAPIError

        # SQLite in WAL mode on a full disk often says only "disk I/O error".
        if isinstance(exc, DBAPIError) and (store_out_of_room(exc) or _storage_full()):
            return f"the store is out of room ({store_error_text(exc)})"
    return None


def refused_for_store(exc: Exception) -> str | None:
    """The one line to print for a command whose state store could not be used for now
    (a PostgreSQL server down or restarting, a lock held past the busy timeout), or None."""
    if not type(exc).__module__.startswith("sqlalchemy"):
        return None
    from sqlalchemy.exc import DBAPIError

    from forge.store.busy import store_busy, store_error_text

    if isinstance(exc, DBAPIError) and store_busy(exc):
        said = " ".join(store_error_text(exc).split())  # psycopg's text spans lines
        return f"the state store cannot be used just now ({said})"
    return None


def refused_for_damage(exc: Exception) -> str | None:
    """The one line to print for a command whose SQLite state store is damaged (SQLite's
    "database disk image is malformed", "file is not a database"), or None."""
    if not type(exc).__module__.startswith("sqlalchemy"):
        return None
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    orig = exc.orig if isinstance(exc, DBAPIError) else None
    said = str(orig)
    if isinstance(orig, sqlite3.DatabaseError) and (
            "malformed" in said or "not a database" in said):
        return (f"the state store FORGE_DB_URL names is damaged ({said}): stop the "
                "services and put it back from a backup (see \"Backup and restore\" in the "
                "operator runbook)")
    return None


class LazyGroup(TyperGroup):
    """The root `forge` group: commands come from `COMMANDS`, loaded on first use. A
    command that fails for want of room, or on a store it cannot use just now, says so in
    one line (exit 1), not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            line = refused_for_room(exc)
            if line is not None:
                typer.echo(f"forge: not done, {line}; make room on the storage root's disk "
                           "and run it again", err=True)
                raise typer.Exit(1) from None
            if type(exc).__module__.startswith("alembic"):
                from alembic.util import CommandError

                if isinstance(exc, CommandError):  # the store's schema (forge.store.migrate)
                    typer.echo(f"forge: not done, {exc}", err=True)
                    raise typer.Exit(1) from None
            line = refused_for_damage(exc)
            if line is not None:
                typer.echo(f"forge: not done, {line}", err=True)
                raise typer.Exit(1) from None
            line = refused_for_store(exc)
            if line is None:
                raise
            typer.echo(f"forge: not done, {line}; check that the database FORGE_DB_URL "
                       "names is up and reachable, and run it again", err=True)
            raise typer.Exit(1) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(dict.fromkeys([*super().list_commands(ctx), *COMMANDS]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in COMMANDS:
            return found
        command = load_command(cmd_name)
        self.add_command(command, cmd_name)
        return command


def register(app: typer.Typer) -> None:
    """Attach every command group now (for in-process callers such as CliRunner tests)."""
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"forge.cli.{module_name}")
        register_module = getattr(module, "register", None)
        if register_module is not None:
            register_module(app)
        else:
            app.add_typer(module.app, name=name)
