"""`forge verify`: the offline verifier (same checks and exit codes as verify_verdict.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from forge.evidence.verify import verify_paths
from forge.evidence.verify_cmd import render


def register(app: typer.Typer) -> None:
    """Add the top-level `verify` command."""

    @app.command("verify")
    def verify(
        score: Path = typer.Argument(..., help="score.json"),
        bundle: Path = typer.Argument(..., help="evidence bundle (.tar.zst or .tar.gz)"),
        sig: Path = typer.Argument(..., help="verdict.sig (DSSE envelope)"),
        pub: Path = typer.Argument(..., help="verdict.pub (PEM public key)"),
        trusted_key: Path | None = typer.Option(
            None, "--trusted-key", metavar="PATH",
            help="PEM file or directory of PEM public keys allowed to sign verdicts."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Verify a verdict: exit 0 PASS, 1 FAIL (every reason printed), 2 unreadable input."""
        result = verify_paths(score, bundle, sig, pub, trusted_key=trusted_key)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        else:
            typer.echo(render(result))
        raise typer.Exit(result.exit_code)
