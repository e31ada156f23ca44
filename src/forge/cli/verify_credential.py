"""`forge verify-credential`: the offline credential check of `forge-verify credential`
(the same code, report and exit codes)."""

from __future__ import annotations

from pathlib import Path

import typer

from forge_verify import main as verify_main


def register(app: typer.Typer) -> None:
    """Add the top-level `verify-credential` command."""

    @app.command("verify-credential")
    def verify_credential(
        credential: Path = typer.Argument(..., help="credential.vc"),
        # a str: "" reaches the verifier, which refuses it (a Path would make it ".")
        trusted_key: str = typer.Option(
            ..., "--trusted-key", metavar="PATH",
            help="PEM file or directory of the issuer's public keys, from the platform "
            "(forge keys export-public, /v1/credentials/keys), never from the person "
            "presenting the credential."),
        verdict: Path | None = typer.Option(
            None, "--verdict", metavar="verdict.sig",
            help="The verdict the credential was issued from: its digest is compared."),
        status_list: Path | None = typer.Option(
            None, "--status-list", metavar="FILE",
            help="The published status list (/v1/credentials/status/1): revocation is "
            "checked."),
        at: str | None = typer.Option(
            None, "--at", metavar="ISO-TIME",
            help="Check the status list's validity at this time (default now)."),
        expect_learner: str | None = typer.Option(
            None, "--expect-learner", metavar="TENANT/SUBJECT",
            help="Fail unless the credential was issued to this learner."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Verify a credential offline: exit 0 PASS, 1 FAIL (every reason), 2 unreadable."""
        argv = ["credential", "--trusted-key", trusted_key]
        if verdict is not None:
            argv += ["--verdict", str(verdict)]
        if status_list is not None:
            argv += ["--status-list", str(status_list)]
        if at is not None:
            argv += ["--at", at]
        if expect_learner is not None:
            argv += ["--expect-learner", expect_learner]
        if as_json:
            argv.append("--json")
        argv += ["--", str(credential)]  # a path may start with -
        raise typer.Exit(verify_main(argv, prog="forge verify-credential"))
