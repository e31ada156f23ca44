"""`forge retention …`: per-scenario result retention and investigation holds (operator).

`cleanup` (alias `run`) works on the artifact store the install uses: with
`FORGE_ARTIFACT_STORE=jetstream` it connects to NATS as the scoreboard and deletes expired
results (and their evidence packs) from the Object Store; holds and the audit log stay under
STORAGE_ROOT (run it where the scoreboard's STORAGE_ROOT is).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forge.cli.context import scoreboard_bus, settings_or_exit
from forge.cli.output import JSON_OPTION, print_json, print_table
from forge.cli.storage import watch_new_root
from forge.retention.holds import HoldError, HoldStore
from forge_verify.keys import Signer

if TYPE_CHECKING:
    from forge.retention.cleanup import CleanupReport

app = typer.Typer(help="Result retention and investigation holds.", no_args_is_help=True)


def _root_and_signer() -> tuple[Path, Signer | None]:
    from forge.signing.keystore import SigningKeyring, keyring_dir

    settings = settings_or_exit()
    ring = SigningKeyring(keyring_dir(settings.storage_root))
    return settings.storage_root, ring.current_or_none()


async def _cleanup_jetstream(root: Path, signer: Signer | None,
                             dry_run: bool) -> CleanupReport:
    from forge.retention.cleanup import cleanup
    from forge.services.common.artifact_stores import ObjectStoreArtifactStore

    settings = settings_or_exit()
    # Results and evidence packs are the scoreboard's to delete, so it speaks as the scoreboard.
    async with scoreboard_bus(settings, "forge-cli-retention") as conn:
        store = ObjectStoreArtifactStore(conn, settings.nats_replicas)
        store.bind(asyncio.get_running_loop())
        return await asyncio.to_thread(cleanup, root, dry_run=dry_run, signer=signer,
                                       store=store)


@app.command("cleanup")
def cleanup_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would go; delete nothing."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Delete results past each scenario's retention_days, except held scenarios."""
    from forge.config.settings import ConfigError
    from forge.retention.cleanup import RetentionAuditError, cleanup

    root, signer = _root_and_signer()
    store_name = settings_or_exit().artifact_store
    try:
        if store_name == "jetstream":
            report = asyncio.run(_cleanup_jetstream(root, signer, dry_run))
        else:
            report = cleanup(root, dry_run=dry_run, signer=signer)
    except RetentionAuditError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ConfigError as exc:
        typer.echo(f"error: {'; '.join(exc.problems)}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # the store cannot be reached: nothing was deleted
        typer.echo(f"error: {store_name} artifact store: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for item in report.items:
            if item.action != "kept":
                typer.echo(f"{item.action:<13} {item.scenario_id:<21} "
                           f"expired {item.expires_at or '-'}  {item.reason}".rstrip())
        counts = report.as_dict()["counts"]
        typer.echo(("dry run: " if dry_run else "") + ", ".join(
            f"{n} {a}" for a, n in counts.items()))
    if not report.ok:
        raise typer.Exit(1)


app.command("run", help="Same as `cleanup`.")(cleanup_cmd)


def _store() -> HoldStore:
    root, signer = _root_and_signer()
    return HoldStore(root, signer)


def _unheard_of(scenario_id: str) -> bool:
    """Neither the database nor the storage root knows `scenario_id` (likely a typo'd id,
    whose hold would protect nothing). A database that cannot be asked (unreachable, of
    another schema) says nothing; it is read as it is, never migrated from here."""
    from sqlalchemy.exc import SQLAlchemyError

    from forge.scenario_paths import scenario_dir
    from forge.store.db import Database
    from forge.store.models import Scenario

    settings = settings_or_exit()
    if scenario_dir(settings.storage_root, scenario_id).exists():
        return False
    try:
        db = Database(settings.db_url)
        try:
            with db.read() as sess:
                return sess.get(Scenario, scenario_id) is None
        finally:
            db.dispose()
    except (SQLAlchemyError, OSError):
        return False


@contextmanager
def _refused() -> Iterator[None]:
    """A hold or release the store refuses (HoldError: exit 1) or a malformed id or
    reason (ValueError: exit 2), told on one line."""
    try:
        yield
    except HoldError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("hold")
def hold_cmd(
    scenario_id: str = typer.Argument(..., help="scn-… id to keep past its retention."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the audit log)."),
) -> None:
    """Place an investigation hold: cleanup skips this scenario until released."""
    store = _store()
    with _refused(), watch_new_root():
        hold, created = store.hold(scenario_id, reason)
    typer.echo(f"{'held' if created else 'already held'}: {hold.scenario_id} "
               f"since {hold.held_at}")
    if created and _unheard_of(hold.scenario_id):
        typer.echo(f"warning: no scenario {hold.scenario_id} is known here (not in the "
                   "database, no results under STORAGE_ROOT): check the id; the hold "
                   "stands and covers results that arrive later", err=True)


@app.command("release")
def release_cmd(scenario_id: str = typer.Argument(..., help="scn-… id to release.")) -> None:
    """Lift an investigation hold."""
    store = _store()
    with _refused():
        released = store.release(scenario_id)
    if not released:
        typer.echo(f"no hold on {scenario_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"released: {scenario_id}")


@app.command("holds")
def holds_cmd(as_json: bool = JSON_OPTION) -> None:
    """List the investigation holds."""
    store = _store()
    try:
        holds = store.list()
    except HoldError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        print_json({"holds": [asdict(h) for h in holds]})
        return
    print_table(("SCENARIO", "HELD_AT", "REASON"),
                ((h.scenario_id, h.held_at, h.reason) for h in holds))
