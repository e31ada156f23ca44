"""`forge config check`: validate the environment exactly as a service would at start."""

from __future__ import annotations

import sys

import typer
from sqlalchemy.engine import make_url

from forge.bus.permissions import user_name
from forge.config.settings import ConfigError, load_settings


def register(app: typer.Typer) -> None:
    """Add the `config` group with its `check` command."""
    group = typer.Typer(help="Configuration.", no_args_is_help=True)

    @group.command("check")
    def check() -> None:
        """Print what is wrong with the environment (exit 1), or a summary (exit 0)."""
        try:
            settings = load_settings()
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            raise typer.Exit(1) from None
        typer.echo(f"FORGE_ENV     {settings.env.value}")
        typer.echo(f"STORAGE_ROOT  {settings.storage_root}")
        db_url = make_url(settings.db_url).render_as_string(hide_password=True)
        typer.echo(f"FORGE_DB_URL  {db_url}")
        for ring in (settings.sat, settings.et, settings.receipt, settings.operator):
            typer.echo(f"{ring.name:<20} kid {ring.current_kid} ({len(ring.kids)} accepted)")
        for identity, ring in settings.nats_passwords.items():
            if ring.current:
                user = user_name(identity, ring.current.decode())
                typer.echo(f"{ring.name:<27} user {user} ({len(ring.kids)} accepted)")
            else:
                typer.echo(f"warning: {ring.name} is not set; the {identity} service will "
                           f"refuse to start")
        for warning in settings.warnings:
            typer.echo(f"warning: {warning}")
        typer.echo("configuration OK")

    app.add_typer(group, name="config")
