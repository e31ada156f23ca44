"""The `forge` command line: one Typer app, sub-apps registered from their own modules."""

from __future__ import annotations

import typer

from forge import __version__

app = typer.Typer(
    name="forge",
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


def _register() -> None:
    """Attach every command group; each lives in its own module under forge.cli."""
    from forge.cli import commands

    commands.register(app)


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
