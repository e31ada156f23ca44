"""`forge completions …`: replay completion events the scoreboard could not score.

Runs the scoreboard's own scoring step in this process (no HTTP): verify, score, write the
verdict once, publish `forge.score.finalized`, mark the stored event reprocessed.
"""

from __future__ import annotations

import asyncio
import json

import typer

from forge.cli.context import bus_settings, open_db, settings_or_exit
from forge.cli.output import JSON_OPTION, cell, print_json, print_table
from forge.services.scoreboard.reprocess import (
    ReprocessOutcome,
    failed_event_dict,
    list_events,
    reprocess,
)
from forge.templates.problems import TemplateError

app = typer.Typer(help="Failed scenario completion events (scoreboard).", no_args_is_help=True)


async def _reprocess(event_id: int | None, all_failed: bool) -> list[ReprocessOutcome]:
    from forge.bus import Publisher
    from forge.config.settings import ConfigError
    from forge.services.common.artifact_stores import (
        ObjectStoreArtifactStore,
        make_artifact_store,
    )
    from forge.services.common.bus import bus_credentials, bus_streams
    from forge.services.scoreboard.scoring import Finalized, Scorer
    from forge.templates.registry import TemplateRegistry

    settings = bus_settings(settings_or_exit())
    try:
        registry = TemplateRegistry.load(settings.templates_dir)
    except TemplateError as exc:
        typer.echo(f"error: templates: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        # Reprocessing is the scoreboard's own step, so it speaks as the scoreboard.
        credentials = bus_credentials(settings, "scoreboard")
    except ConfigError as exc:
        typer.echo(f"error: {'; '.join(exc.problems)}", err=True)
        raise typer.Exit(1) from None
    db = open_db(settings)
    publisher = Publisher(settings.nats_url, name="forge-cli-reprocess",
                          connect_timeout=3.0, credentials=credentials,
                          streams=bus_streams(settings))

    async def publish(finalized: Finalized) -> None:
        await publisher.publish(finalized.event.bus_subject(), finalized.payload,
                                msg_id=finalized.msg_id, timeout=3.0)

    try:
        await publisher.start(wait=3.0)  # also reads evidence packs from the Object Store
        artifacts = make_artifact_store(settings, publisher.connection)
        if isinstance(artifacts, ObjectStoreArtifactStore):
            artifacts.bind(asyncio.get_running_loop())
        scorer = Scorer(settings, registry, bus=publisher.connection, artifacts=artifacts,
                        db=db)
        return await reprocess(scorer, db, publish, event_id=event_id,
                               all_failed=all_failed)
    finally:
        await publisher.close()
        db.dispose()


@app.command("reprocess")
def reprocess_cmd(
    # An id is a 64-bit integer (as the API's `id`): a larger one overflowed the query.
    event_id: int | None = typer.Option(None, "--id", min=1, max=2**63 - 1,
                                        help="One failed event id."),
    all_failed: bool = typer.Option(False, "--all", help="Every event still marked failed."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Score stored failed completions again (idempotent: one verdict per scenario)."""
    if (event_id is None) == (not all_failed):
        typer.echo("error: give exactly one of --id ID or --all", err=True)
        raise typer.Exit(2)
    outcomes = asyncio.run(_reprocess(event_id, all_failed))
    if as_json:
        typer.echo(json.dumps({"results": [o.as_dict() for o in outcomes]}, indent=2))
    elif not outcomes:
        typer.echo("no failed completion events")
    for o in outcomes if not as_json else []:
        typer.echo(f"{o.id:>6}  {o.scenario_id or '-':<20}  {o.status:<20}  {o.message}")
    if any(not o.ok for o in outcomes):
        raise typer.Exit(1)


@app.command("list")
def list_cmd(
    status: str = typer.Option("failed", "--status", help="failed, reprocessed or all."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Stored completion events with their last error."""
    if status not in ("failed", "reprocessed", "all"):
        typer.echo("error: --status must be failed, reprocessed or all", err=True)
        raise typer.Exit(2)
    db = open_db(settings_or_exit())
    try:
        rows = list_events(db, None if status == "all" else status)
    finally:
        db.dispose()
    events = [failed_event_dict(r) for r in rows]
    if as_json:
        print_json({"events": events})
        return
    print_table(("ID", "SCENARIO", "STATUS", "ATTEMPTS", "LAST_FAILED", "ERROR"), ((
        str(e["id"]), cell(e["scenario_id"]), str(e["status"]), str(e["attempts"]),
        cell(e["last_failed_at"]), str(e["error"])) for e in events))
