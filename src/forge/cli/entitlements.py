"""`forge entitlements grant|revoke|list`: the entitlement store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console
from rich.table import Table

from forge.cli.context import open_db, settings_or_exit
from forge.entitlements.grants import TENANT_WIDE, grant, list_grants, revoke
from forge.plans import load_plans

app = typer.Typer(help="Plan grants in the entitlement store.", no_args_is_help=True)


@app.command("grant")
def grant_cmd(
    tenant: str = typer.Option(..., "--tenant"),
    plan: str = typer.Option(..., "--plan", help="FREE, PRO, TEAM, ENTERPRISE or an alias."),
    subject: str = typer.Option(TENANT_WIDE, "--subject", help="One learner, or * for all."),
    days: int | None = typer.Option(None, "--days", min=1, help="Expire after N days."),
) -> None:
    """Grant a plan to a tenant or one of its learners."""
    settings = settings_or_exit()
    known = load_plans(settings.plans_file).get(plan)
    if known is None:
        raise typer.BadParameter(f"unknown plan {plan!r}", param_hint="--plan")
    expires = datetime.now(UTC) + timedelta(days=days) if days else None
    try:
        grant(open_db(settings), tenant, known.name, subject, expires)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"granted {known.name} to {tenant}/{subject}")


@app.command("revoke")
def revoke_cmd(
    tenant: str = typer.Option(..., "--tenant"),
    subject: str = typer.Option(TENANT_WIDE, "--subject"),
) -> None:
    """Revoke a grant."""
    if not revoke(open_db(settings_or_exit()), tenant, subject):
        typer.echo(f"no live grant for {tenant}/{subject}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {tenant}/{subject}")


@app.command("list")
def list_cmd(tenant: str | None = typer.Option(None, "--tenant")) -> None:
    """List grants."""
    table = Table("tenant", "subject", "plan", "expires", "revoked")
    for row in list_grants(open_db(settings_or_exit()), tenant):
        table.add_row(row.tenant_id, row.subject, row.plan,
                      row.expires_at.isoformat() if row.expires_at else "",
                      row.revoked_at.isoformat() if row.revoked_at else "")
    Console().print(table)
