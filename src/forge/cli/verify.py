"""`forge verify`: the offline verifier, run by `forge_verify.main` (the same code as
`forge-verify` and scripts/verify_verdict.py, so the report and exit codes are identical)."""

from __future__ import annotations

from pathlib import Path

import typer

from forge_verify import main as verify_main


def register(app: typer.Typer) -> None:
    """Add the top-level `verify` command."""

    @app.command("verify")
    def verify(
        score: Path = typer.Argument(..., help="score.json"),
        bundle: Path = typer.Argument(..., help="evidence bundle (.tar.zst or .tar.gz)"),
        sig: Path = typer.Argument(..., help="verdict.sig (DSSE envelope)"),
        pub: Path = typer.Argument(..., help="verdict.pub (PEM public key)"),
        # a str: "" reaches the verifier, which refuses it (a Path would make it ".")
        trusted_key: str | None = typer.Option(
            None, "--trusted-key", metavar="PATH",
            help="PEM file or directory of PEM public keys allowed to sign verdicts."),
        expect_learner: str | None = typer.Option(
            None, "--expect-learner", metavar="TENANT/SUBJECT",
            help="Fail unless the verdict is this learner's."),
        expect_lab: str | None = typer.Option(
            None, "--expect-lab", metavar="TEMPLATE",
            help="Fail unless the verdict is on this lab (its template name)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Verify a verdict: exit 0 PASS, 1 FAIL (every reason printed), 2 unreadable input."""
        argv = ["--trusted-key", trusted_key] if trusted_key is not None else []
        for flag, value in (("--expect-learner", expect_learner), ("--expect-lab", expect_lab)):
            if value is not None:
                argv += [flag, value]
        if as_json:
            argv.append("--json")
        argv += ["--", str(score), str(bundle), str(sig), str(pub)]  # a path may start with -
        raise typer.Exit(verify_main(argv, prog="forge verify"))
