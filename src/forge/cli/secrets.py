"""`forge secrets generate`: a ready .env block of fresh secrets."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from forge.cli.output import keep_stdout_private
from forge.config.secrets import NATS_PASSWORD_VARS, REQUIRED_SECRETS, generate_secret

app = typer.Typer(help="Secrets for FORGE_ENV=staging/prod.", no_args_is_help=True)


@app.command()
def generate(
    suffix: str = typer.Option(
        "",
        help="Emit the rotation variant instead: NEXT (pre-stage) or PREVIOUS.",
        metavar="[NEXT|PREVIOUS]",
    ),
    nats: bool = typer.Option(
        False, "--nats", help="Also print a NATS password for each service (NATS_*_PASSWORD)."
    ),
) -> None:
    """Print fresh values for the four required secrets (and NATS passwords) as KEY=value."""
    suffix = suffix.strip().upper()
    if suffix not in ("", "NEXT", "PREVIOUS"):
        raise typer.BadParameter("must be NEXT or PREVIOUS", param_hint="--suffix")
    keep_stdout_private("the secrets")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    typer.echo(f"# FrostGate Forge secrets, generated {stamp}. Keep them in your secret manager.")
    names = (*REQUIRED_SECRETS, *(NATS_PASSWORD_VARS.values() if nats else ()))
    for name in names:
        var = f"{name}_{suffix}" if suffix else name
        typer.echo(f"{var}={generate_secret()}")
