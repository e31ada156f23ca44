"""The `forge` command line: one Typer app whose commands load from their own modules on use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from forge import __version__, startup_gc
from forge.cli.commands import LazyGroup
from forge.cli.storage import use_storage_root

app = typer.Typer(
    name="forge",
    cls=LazyGroup,
    help="FrostGate Forge: governed, sandboxed cyber-training labs with signed verdicts.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"forge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    storage: Path | None = typer.Option(
        None, "--storage", metavar="PATH", show_default=False,
        help="Storage root for this command (keys, grants, DB, results); overrides "
        "STORAGE_ROOT, which defaults to ./storage."),
) -> None:
    """FrostGate Forge."""
    # The command's module is loaded by now (LazyGroup resolves it before this runs).
    startup_gc.release()
    if storage is not None:
        use_storage_root(storage)


_registered = False


def _register() -> None:
    """Attach every command group at once (in-process callers such as CliRunner tests); the
    console script loads only the command it runs (`forge.cli.commands.LazyGroup`)."""
    global _registered
    if not _registered:
        from forge.cli import commands

        commands.register(app)
        _registered = True


# Never less than this: what a command makes under the storage root (scenario folders and
# their audit logs, retention/, audit/, scoreboard/, logs) stays unwritable by group and
# others whatever umask the shell or supervisor handed down. Under umask 0 those folders
# were 0777: a local user swapped a scenario's audit.jsonl for a symlink and root appended
# to, or cut the tail of, any file it pointed at.
UMASK_FLOOR = 0o022


def keep_umask_private() -> int:
    """Add UMASK_FLOOR to the process umask (a stricter one stays); returns the new one."""
    tightened = os.umask(UMASK_FLOOR) | UMASK_FLOOR
    os.umask(tightened)
    return tightened


def main() -> None:
    """Console-script entry point."""
    keep_umask_private()
    startup_gc.hold()
    try:
        app()
    except Exception as exc:
        from forge.config.storage_root import UnsafeStorage  # lazily: keeps `forge` fast

        if not isinstance(exc, UnsafeStorage):
            raise
        # A command that opened the root past settings_or_exit: the same line, exit 2.
        print(f"forge: {exc}", file=sys.stderr)
        sys.exit(2)
