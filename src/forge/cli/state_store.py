"""`forge store copy`: move an installation's state store into a new database.

The store FORGE_DB_URL names (a new PostgreSQL database, say) receives every row of the
storage root's own SQLite store (or of ``--from``), in one transaction: all of it, or on
any error nothing. The copy holds the storage root's lock, so `forge up` cannot start on
the root meanwhile, and is refused while one runs (its services would go on writing to the
source after the copy read it).
"""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from forge.cli.context import settings_or_exit
from forge.cli.storage import hold_root_or_exit
from forge.config.db_url import db_url_problem, has_password, normalize_url, shown_url
from forge.stack.lock import CLEANUP, COPY, StorageLocked
from forge.store.sqlite_files import sqlite_file
from forge.store.transfer import TransferFailed, TransferRefused, copy_store

# Where a source URL with a password goes: on the command line (`--from`) it is readable by
# every local user in /proc/PID/cmdline (`ps`) for as long as the copy runs.
FROM_VARIABLE = "FORGE_STORE_COPY_FROM"

app = typer.Typer(help="The state store: copy it into a new database.", no_args_is_help=True)


def _shown(url: str) -> str:
    """``url`` without its password, for output."""
    return shown_url(url)


def _why_not_now(running: StorageLocked) -> str:
    """Why the copy waits for whoever holds the storage root: only `forge up` runs
    services that write to the store."""
    if running.holder == COPY:
        return "one copy at a time"
    if running.holder == CLEANUP:
        return "or let it end: one command holds the storage root at a time"
    return "its services would go on writing to the store after the copy read it"


@app.command("copy")
def copy(
    ctx: typer.Context,
    source: str | None = typer.Option(
        None, "--from", envvar=FROM_VARIABLE, show_envvar=True,
        help="The store to copy from (a database URL; one with a password only through the "
        f"variable {FROM_VARIABLE}); default: the storage root's own SQLite store, "
        "$STORAGE_ROOT/forge.db."),
) -> None:
    """Copy every row of a state store into the new, empty store FORGE_DB_URL names (run it
    with the services stopped); exit 1, with nothing written, when the target holds rows
    or the source is missing."""
    settings = settings_or_exit()
    root = settings.storage_root
    own = root / "forge.db"
    from_url = normalize_url(source) if source else f"sqlite:///{own}"
    problem = db_url_problem(from_url)
    if problem is not None:  # said of FORGE_DB_URL, which has the same rules
        raise typer.BadParameter(problem.replace("FORGE_DB_URL ", "", 1),
                                 param_hint="--from")
    made = make_url(from_url)
    if has_password(made) \
            and getattr(ctx.get_parameter_source("source"), "name", None) == "COMMANDLINE":
        raise typer.BadParameter(
            "a password on the command line is readable by every local user (ps) while the "
            f"copy runs; nothing was copied: put the URL in {FROM_VARIABLE} instead "
            f"({FROM_VARIABLE}=URL forge store copy)", param_hint="--from")
    path = sqlite_file(from_url) if made.get_backend_name() == "sqlite" else None
    if made.get_backend_name() == "sqlite" and (path is None or not path.is_file()):
        typer.echo(f"store copy refused: no state store at {path or from_url} (--from names "
                   "the store to copy; without it, the storage root's forge.db)", err=True)
        raise typer.Exit(1)
    lock = hold_root_or_exit(root, COPY, "store copy", _why_not_now)
    try:
        copied = copy_store(from_url, settings.db_url,
                            source_setting="--from" if source else "STORAGE_ROOT")
    except TransferRefused as exc:
        typer.echo(f"store copy refused: {exc}", err=True)
        raise typer.Exit(1) from None
    except TransferFailed as exc:
        typer.echo(f"store copy failed: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        lock.release()
    width = max((len(t) for t in copied), default=0)
    for table, rows in copied.items():
        typer.echo(f"{table:{width}} {rows}")
    typer.echo(f"copied {sum(copied.values())} rows of {len(copied)} tables from "
               f"{_shown(from_url)} into {_shown(settings.db_url)} (FORGE_DB_URL)")
    if path is not None and path == own:
        typer.echo(f"next: keep FORGE_DB_URL set for every service, and move {own} (with "
                   "its -wal and -shm files) out of the storage root, kept as the record of "
                   "what was, before `forge up`", err=True)
