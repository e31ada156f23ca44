"""The `forge` command line: one Typer app whose commands load from their own modules on use."""

from __future__ import annotations

import typer

from forge import __version__
from forge.cli.commands import LazyGroup

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
) -> None:
    """FrostGate Forge."""


_registered = False


def _register() -> None:
    """Attach every command group at once (in-process callers such as CliRunner tests); the
    console script loads only the command it runs (`forge.cli.commands.LazyGroup`)."""
    global _registered
    if not _registered:
        from forge.cli import commands

        commands.register(app)
        _registered = True


def main() -> None:
    """Console-script entry point."""
    app()
