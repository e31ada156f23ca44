"""`forge secrets generate`: a ready .env block of fresh secrets."""

from __future__ import annotations

import os
import stat
import sys
from datetime import UTC, datetime

import typer

from forge.config.secrets import NATS_PASSWORD_VARS, REQUIRED_SECRETS, generate_secret

app = typer.Typer(help="Secrets for FORGE_ENV=staging/prod.", no_args_is_help=True)


def _private_output() -> None:
    """Make the file stdout is redirected to (`forge secrets generate > forge.env`) readable
    by its owner only before a secret is written: the shell creates it under the umask
    (0644 under the usual 022), so every local user could read the secrets. A file of
    another user (one planted at that path, e.g. in /tmp) is refused (exit 2) and nothing is
    written: its owner could read them. A terminal or a pipe is left alone."""
    try:
        fd = sys.stdout.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError, AttributeError):  # no real descriptor (captured output)
        return
    if not stat.S_ISREG(st.st_mode):
        return
    mode, me = stat.S_IMODE(st.st_mode), os.geteuid()
    if st.st_uid != me:
        typer.echo(f"error: stdout is a file of uid {st.st_uid} (mode {mode:o}), not of uid "
                   f"{me}: that user could read the secrets; nothing was written. Write "
                   "them to a new file of your own", err=True)
        raise typer.Exit(2)
    if mode & 0o077:
        os.fchmod(fd, mode & 0o700)


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
    _private_output()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    typer.echo(f"# FrostGate Forge secrets, generated {stamp}. Keep them in your secret manager.")
    names = (*REQUIRED_SECRETS, *(NATS_PASSWORD_VARS.values() if nats else ()))
    for name in names:
        var = f"{name}_{suffix}" if suffix else name
        typer.echo(f"{var}={generate_secret()}")
