"""`forge artifacts fetch SCENARIO_ID [--out DIR]`: a scenario's result files on local disk.

On a multi-machine install (`FORGE_ARTIFACT_STORE=jetstream`) results live in the JetStream
Object Store, not under any one machine's STORAGE_ROOT. This command writes the four files
(score.json, the evidence bundle, verdict.sig, verdict.pub) into DIR — by default
`storage/scenarios/<scenario_id>/results/` under the current directory, so the runbook's
offline verification command works on them unchanged. Only those fixed file names are
written, each straight into DIR (a symlink planted there is refused, never followed).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from forge.bus.artifact_objects import RESULT_NAMES
from forge.cli.context import scoreboard_bus, settings_or_exit
from forge_verify.score import SCENARIO_ID_RE

app = typer.Typer(help="Result artifacts of scored scenarios.", no_args_is_help=True)
ALLOWED_NAMES = frozenset(RESULT_NAMES)  # the store's own names; nothing else is written


async def _from_jetstream(scenario_id: str) -> dict[str, bytes] | None:
    from forge.bus.artifact_objects import read_result_files

    # Reading results is the scoreboard's own right on the bus, so it speaks as the scoreboard.
    async with scoreboard_bus(settings_or_exit(), "forge-cli-artifacts") as conn:
        return await read_result_files(conn.jetstream(), scenario_id)


def _write_into(out: Path, files: dict[str, bytes]) -> None:
    from forge.evidence.artifacts import write_synced

    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if name not in ALLOWED_NAMES:  # the store names only these; anything else is skipped
            continue
        write_synced(out / name, data, replace=True)


@app.command("fetch")
def fetch(
    scenario_id: str = typer.Argument(..., help="The scenario (scn- and 16 hex characters)."),
    out: Path | None = typer.Option(
        None, "--out", help="Directory to write into (default: "
        "storage/scenarios/<scenario_id>/results under the current directory)."),
) -> None:
    """Write a scenario's result files (from the configured artifact store) into DIR."""
    if SCENARIO_ID_RE.fullmatch(scenario_id) is None:
        typer.echo("error: scenario_id: expected scn- followed by 16 lowercase hex characters",
                   err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()
    target = out if out is not None else Path("storage") / "scenarios" / scenario_id / "results"
    try:
        if settings.artifact_store == "jetstream":
            files = asyncio.run(_from_jetstream(scenario_id))
        else:
            from forge.evidence.artifacts import read_results, results_dir
            source = results_dir(settings.storage_root, scenario_id)
            files = read_results(settings.storage_root, scenario_id)
            if files is not None and target.resolve() == source.resolve():
                typer.echo(f"{scenario_id}: results already in {target}")
                return
    except Exception as exc:  # the store cannot be read: say which and why, exit 1
        typer.echo(f"error: {settings.artifact_store} artifact store: {type(exc).__name__}: "
                   f"{exc}", err=True)
        raise typer.Exit(1) from None
    if not files or "score.json" not in files:
        typer.echo(f"error: no results for {scenario_id} in the {settings.artifact_store} "
                   "artifact store (not scored yet, or removed by retention)", err=True)
        raise typer.Exit(1)
    try:
        _write_into(target, files)
    except OSError as exc:
        typer.echo(f"error: cannot write into {target}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    names = ", ".join(sorted(n for n in files if n in ALLOWED_NAMES))
    typer.echo(f"{scenario_id}: wrote {names} into {target}")
