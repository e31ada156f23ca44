"""`forge audit verify`: check the global (or one scenario's) audit chain and signed head."""

from __future__ import annotations

from pathlib import Path

import typer

from forge.audit.log import global_log, scenario_log
from forge.cli.keys import KEYS_DIR_OPTION, STORAGE_OPTION, open_keyring
from forge_verify.score import ScoreInputError

app = typer.Typer(help="Hash-chained audit logs.", no_args_is_help=True)


@app.command("verify")
def verify(
    scenario: str | None = typer.Option(None, "--scenario", help="Scenario id (scn-…)."),
    storage: Path | None = STORAGE_OPTION,
    keys_dir: Path | None = KEYS_DIR_OPTION,
) -> None:
    """Verify links, hashes and checkpoint signatures; exit 1 with every reason if broken."""
    root = (storage or Path("storage")).absolute()
    try:
        log = scenario_log(root, scenario) if scenario is not None else global_log(root)
    except ScoreInputError as exc:
        typer.echo(f"error: --scenario: {exc}", err=True)
        raise typer.Exit(2) from None
    if scenario is not None and not log.path.exists() and not log.head_path.exists():
        # Every scenario's log is written at its spawn and kept (retention too): none at
        # all is a mistyped id or a removed log, never "OK, 0 entries".
        typer.echo(f"error: --scenario: no audit log for {scenario} at {log.path} (not a "
                   "scenario of this storage root, or its log was removed)", err=True)
        raise typer.Exit(2)
    if scenario is None and not log.path.exists() and not log.head_path.exists():
        # Likewise the global log: none at all is another directory than the installation's
        # storage root (the default is ./storage) or a removed log, never "OK, 0 entries".
        typer.echo(f"error: no audit log at {log.path} (not this installation's storage "
                   "root: give --storage or STORAGE_ROOT; or nothing was audited there yet, "
                   "or its log was removed)", err=True)
        raise typer.Exit(2)
    keys = open_keyring(storage, keys_dir).public_keys()
    report = log.verify(keys)
    typer.echo(f"{'OK' if report.ok else 'BROKEN'} {log.path}: {report.entries} entries, "
               f"{report.checkpoints} checkpoints, head {report.head[:16]}")
    for reason in report.reasons:
        typer.echo(f"  FAIL {reason}")
    for note in report.notes:
        typer.echo(f"  note {note}")
    raise typer.Exit(0 if report.ok else 1)
