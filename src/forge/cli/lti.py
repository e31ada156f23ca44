"""`forge lti key new|platform list|grades|retry`: Forge as an LTI 1.3 tool (issue 18 item 4).

Platforms are registered in the LTI file (`FORGE_LTI_FILE`); these commands make the tool
key it names, show each platform with the URLs to paste into the LMS, and follow the
grades owed to platforms (the outbox the scoreboard posts from).
"""

from __future__ import annotations

from pathlib import Path

import typer

from forge.classroom.lti_grade_posts import (
    FAILED,
    MAX_LISTED,
    PENDING,
    POSTED,
    list_grades,
    requeue_grade,
)
from forge.cli.context import open_db, settings_or_exit
from forge.cli.output import JSON_OPTION, cell, print_json, print_table
from forge.identity.lti_config import LtiConfigError, LtiRegistry, generate_key, load_lti
from forge.store.timestamps import iso

MAX_GRADES_LIMIT = 1_000_000

app = typer.Typer(help="LTI 1.3: the tool key, registered LMS platforms, grade passback.",
                  no_args_is_help=True)
key_app = typer.Typer(help="The tool's RSA key (signs deep links and client assertions).",
                      no_args_is_help=True)
platform_app = typer.Typer(help="LMS platforms registered in FORGE_LTI_FILE.",
                           no_args_is_help=True)
app.add_typer(key_app, name="key")
app.add_typer(platform_app, name="platform")


@key_app.command("new")
def key_new(path: Path = typer.Argument(..., help="Where to write the PEM (must not exist).")
            ) -> None:
    """Write a new 2048-bit RSA key (mode 0600) for `tool.private_key_file`."""
    try:
        generate_key(path)
    except FileExistsError:
        typer.echo(f"error: {path} exists; a key is never overwritten", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot write {path}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{path}: new tool key; name it in the LTI file as tool.private_key_file")


def _registry() -> LtiRegistry:
    settings = settings_or_exit()
    if settings.lti_file is None:
        typer.echo("error: FORGE_LTI_FILE is not set (no LMS is registered)", err=True)
        raise typer.Exit(1)
    try:
        return load_lti(settings.lti_file)
    except LtiConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@platform_app.command("list")
def platform_list(as_json: bool = JSON_OPTION) -> None:
    """Registered platforms, and the URLs to paste into each LMS's tool registration."""
    reg = _registry()
    urls = {"login_initiation_url": reg.url("/lti/login"), "launch_url": reg.url("/lti/launch"),
            "redirect_uri": reg.url("/lti/launch"), "deep_linking_url": reg.url("/lti/launch"),
            "jwks_url": reg.url("/lti/jwks"), "key_id": reg.key.kid}
    rows = [{"name": p.name, "tenant": p.tenant_id, "issuer": p.config.issuer,
             "client_id": p.config.client_id, "deployment_ids": list(p.config.deployment_ids)}
            for p in reg.platforms.values()]
    if as_json:
        print_json({"tool": urls, "platforms": rows})
        return
    for name, value in urls.items():
        typer.echo(f"{name}: {value}")
    print_table(("NAME", "TENANT", "ISSUER", "CLIENT_ID", "DEPLOYMENTS"),
                ([str(r["name"]), str(r["tenant"]), str(r["issuer"]), str(r["client_id"]),
                  ",".join(r["deployment_ids"])] for r in rows))  # type: ignore[arg-type]


@app.command()
def grades(
    state: str | None = typer.Option(None, "--state", help="pending, posted or failed."),
    limit: int = typer.Option(MAX_LISTED, "--limit", min=1, max=MAX_GRADES_LIMIT,
                              help="List at most this many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Grades owed to LMS platforms, newest first: pending (retried, or waiting for the
    learner's LMS id or the assignment's grade column: the reason says which), posted,
    failed (with the reason). A list cut at --limit says so (`more` in --json)."""
    if state is not None and state not in (PENDING, POSTED, FAILED):
        typer.echo("error: --state: one of pending, posted, failed", err=True)
        raise typer.Exit(2)
    found = list_grades(open_db(settings_or_exit()), state, limit + 1)
    more = len(found) > limit
    rows = [{"scenario_id": g.scenario_id, "platform": g.platform,
             "assignment_id": g.assignment_id, "score": g.score_given, "state": g.state,
             "attempts": g.attempts, "last_error": g.last_error,
             "waiting": not (g.lineitem and g.lti_user),
             "posted_at": iso(g.posted_at)}
            for g in found[:limit]]
    if more:  # never a cut list passed off as the whole
        typer.echo(f"note: only the newest {limit} are listed; --state narrows the list, "
                   "--limit lengthens it", err=True)
    if as_json:
        print_json({"grades": rows, "more": more})
        return
    print_table(("SCENARIO", "PLATFORM", "ASSIGNMENT", "SCORE", "STATE", "ATTEMPTS", "ERROR"),
                ([str(r["scenario_id"]), str(r["platform"]), str(r["assignment_id"]),
                  str(r["score"]), str(r["state"]), str(r["attempts"]), cell(r["last_error"])]
                 for r in rows))


@app.command()
def retry(scenario_id: str = typer.Argument(..., help="The scenario whose grade to post.")
          ) -> None:
    """Post a failed grade again (e.g. after the course's grade column was restored)."""
    if not requeue_grade(open_db(settings_or_exit()), scenario_id):
        typer.echo(f"error: {scenario_id} owes no unposted grade (see `forge lti grades`)",
                   err=True)
        raise typer.Exit(1)
    typer.echo(f"{scenario_id}: grade queued; the scoreboard posts it within seconds")
