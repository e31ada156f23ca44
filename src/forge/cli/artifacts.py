"""`forge artifacts fetch SCENARIO_ID [--out DIR]`: a scenario's result files on local disk;
`forge artifacts check`: after a restore, do the store and the results folders agree.

On a multi-machine install (`FORGE_ARTIFACT_STORE=jetstream`) results live in the JetStream
Object Store, not under any one machine's STORAGE_ROOT. This command writes the four files
(score.json, the evidence bundle, verdict.sig, verdict.pub) into DIR — by default
`storage/scenarios/<scenario_id>/results/` under the current directory, so the runbook's
offline verification command works on them unchanged. Only those fixed file names are
written, each straight into DIR (a symlink planted there is refused, never followed). The
default DIR's folders (`storage`, `scenarios`, the scenario's, `results`) are made one at a
time and each must be a real folder of this user (or root) that no other user may write:
run in /tmp, another user's `storage` (or a link at any of them) could otherwise lead the
files into a folder of that user's choosing, or let them swap the files once written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path

import typer

from forge.bus.artifact_objects import RESULT_NAMES
from forge.cli.context import scoreboard_bus, settings_or_exit
from forge.config.storage_root import others_may_write
from forge_verify.score import SCENARIO_ID_RE

app = typer.Typer(help="Result artifacts of scored scenarios.", no_args_is_help=True)
ALLOWED_NAMES = frozenset(RESULT_NAMES)  # the store's own names; nothing else is written


async def _from_jetstream(scenario_id: str) -> dict[str, bytes] | None:
    from forge.bus.artifact_objects import read_result_files

    # Reading results is the scoreboard's own right on the bus, so it speaks as the scoreboard.
    async with scoreboard_bus(settings_or_exit(), "forge-cli-artifacts") as conn:
        return await read_result_files(conn.jetstream(), scenario_id)


class UnsafeTarget(Exception):
    """A folder of the default DIR another user made, may write, or a link: the message
    names it, its owner and mode."""


def _checked_folder(path: Path) -> None:
    """Make ``path`` (one level) unless there, then refuse (UnsafeTarget) a link, a
    non-folder, or a folder of another user (not root) or that other users may write."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o755)
    st = os.lstat(path)
    mode, me = stat.S_IMODE(st.st_mode), os.geteuid()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise UnsafeTarget(f"{path} is {what} (owner uid {st.st_uid}), not a folder of yours")
    if st.st_uid not in (me, 0) or others_may_write(st):
        raise UnsafeTarget(f"{path} is owned by uid {st.st_uid} (mode {mode:o}): another user "
                           "could choose where the files go or swap them")


def _default_target(scenario_id: str) -> Path:
    """``storage/scenarios/<id>/results`` under the current directory, each folder made
    and checked in turn (`_checked_folder`)."""
    target = Path("storage")
    for part in ("scenarios", scenario_id, "results"):
        _checked_folder(target)
        target = target / part
    _checked_folder(target)
    return target


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
        if out is None:
            target = _default_target(scenario_id)
        _write_into(target, files)
    except UnsafeTarget as exc:
        typer.echo(f"error: refusing to write into {target}: {exc}; nothing was written. "
                   "Use --out DIR with a folder of your own", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot write into {target}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    names = ", ".join(sorted(n for n in files if n in ALLOWED_NAMES))
    typer.echo(f"{scenario_id}: wrote {names} into {target}")


@app.command("check")
def check(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) \
        -> None:
    """After a restore: does the state store agree with the results folders? Exit 1 naming
    each scenario graded without its signed files (or with them but unknown to the store),
    2 when neither holds any scenario (not the restored installation's root or store)."""
    import json

    from forge.cli.context import open_db
    from forge.cli.restore_check import results_mismatches

    settings = settings_or_exit()
    if settings.artifact_store == "jetstream":
        typer.echo("error: forge artifacts check reads results folders; with "
                   "FORGE_ARTIFACT_STORE=jetstream the results are in the bucket, which a "
                   "storage root backup does not hold", err=True)
        raise typer.Exit(2)
    compared = results_mismatches(open_db(settings), settings.storage_root)
    if compared.empty:  # a mistyped STORAGE_ROOT (a new, empty one) agrees with nothing
        typer.echo(f"error: nothing to check: the store records no scenario and "
                   f"{settings.storage_root}/scenarios holds no results folder; is "
                   "STORAGE_ROOT (and FORGE_DB_URL) the restored installation's?", err=True)
        raise typer.Exit(2)
    found = compared.mismatches
    if json_out:
        typer.echo(json.dumps([{"scenario_id": m.scenario_id, "problem": m.problem,
                                "detail": m.detail} for m in found]))
    elif not found:
        typer.echo("the state store and the results folders agree")
    else:
        for m in found:
            typer.echo(f"{m.scenario_id}: {m.problem}: {m.detail}")
        typer.echo(f"{len(found)} scenario(s) disagree: the store and the storage root were "
                   "copied at different moments", err=True)
        if any(m.problem != "not_recorded" for m in found):
            typer.echo("a lab graded without its signed files: restore the storage root from "
                       "a copy made after the store's (PostgreSQL: pg_dump first, then copy "
                       "the storage root; SQLite: copy it whole with the services stopped)",
                       err=True)
        if any(m.problem == "not_recorded" for m in found):
            typer.echo("signed files the store does not record: their verdicts are still "
                       "served and verify; the store's copy predates those scenarios' "
                       "grading (their labs are not in their learners' lists)", err=True)
    if found:
        raise typer.Exit(1)
