"""`forge entitlements grant|revoke|list`: the entitlement store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer

from forge.cli.context import open_db, plans_or_exit, settings_or_exit
from forge.cli.output import JSON_OPTION, cell, print_json, print_table
from forge.entitlements.grants import TENANT_WIDE, grant, is_live, list_grants, revoke
from forge.store.timestamps import iso

MAX_GRANT_DAYS = 36500

app = typer.Typer(help="Plan grants in the entitlement store.", no_args_is_help=True)


@app.command("grant")
def grant_cmd(
    tenant: str = typer.Option(..., "--tenant"),
    plan: str = typer.Option(..., "--plan", help="FREE, PRO, TEAM, ENTERPRISE or an alias."),
    subject: str = typer.Option(TENANT_WIDE, "--subject", help="One learner, or * for all."),
    # At most 100 years: a larger N overflowed the expiry date (a traceback, nothing granted).
    days: int | None = typer.Option(None, "--days", min=1, max=MAX_GRANT_DAYS,
                                    help="Expire after N days (1-36500)."),
) -> None:
    """Grant a plan to a tenant or one of its learners."""
    settings = settings_or_exit()
    known = plans_or_exit(settings).get(plan)
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
    subject: str = typer.Option(TENANT_WIDE, "--subject",
                                help="One learner, or * for every learner of the tenant."),
) -> None:
    """Revoke a grant and the plan of every receipt issued until now (a receipt still
    signs its learner in; it grants no plan)."""
    db = open_db(settings_or_exit())
    try:
        done = revoke(db, tenant, subject)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    owner = f"{tenant}/{subject}"
    ended = f"revoked the {done.plan} grant of {owner}" if done.plan else \
        f"no live grant for {owner} (revoke recorded)"
    whose = f"every learner of {tenant}" if subject == TENANT_WIDE else owner
    typer.echo(f"{ended}; receipts of {whose} issued at or before {_when(done.at)} now "
               "grant no plan")
    # Grants of other owners are theirs to revoke: say which still give this one a plan.
    left = [g for g in list_grants(db, tenant)
            if g.subject != subject and is_live(g, done.at)
            and (subject == TENANT_WIDE or g.subject == TENANT_WIDE)]
    for g in left:
        who = f"{tenant}/{g.subject}" if g.subject != TENANT_WIDE else f"{tenant} (tenant-wide)"
        typer.echo(f"still live: the {g.plan} grant of {who}; revoke it with --subject "
                   f"{g.subject!r} if it should end too", err=True)


def _when(at: datetime) -> str:
    """The revoke's second: receipts issued in it are refused too (see receipt_revoked)."""
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command("list")
def list_cmd(tenant: str | None = typer.Option(None, "--tenant"),
             as_json: bool = JSON_OPTION) -> None:
    """List grants (plan "-": only a revoke recorded, never a grant), with the time until
    which the owner's receipts grant no plan."""
    grants = [{"tenant": g.tenant_id, "subject": g.subject, "plan": g.plan,
               "expires": iso(g.expires_at),
               "revoked": iso(g.revoked_at),
               "receipts_revoked": iso(g.receipts_revoked_at)}
              for g in list_grants(open_db(settings_or_exit()), tenant)]
    if as_json:
        print_json({"grants": grants})
        return
    print_table(("TENANT", "SUBJECT", "PLAN", "EXPIRES", "REVOKED", "RECEIPTS REVOKED UNTIL"),
                ([str(g["tenant"]), str(g["subject"]), str(g["plan"]), cell(g["expires"]),
                  cell(g["revoked"]), cell(g["receipts_revoked"])] for g in grants))
