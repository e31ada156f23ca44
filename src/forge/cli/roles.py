"""`forge roles set|show`: a person's role in a tenant (learner, instructor, operator).

Where people sign in with API keys alone (no identity provider, no LMS), this is how an
operator makes someone an instructor (``/teach``, the cohort API) or an operator. An
identity provider stays the source of truth for whoever signs in through it: their next
sign-in sets the role it names; an LMS launch only ever raises it.
"""

from __future__ import annotations

from typing import Any

import typer

from forge.cli.context import open_db, settings_or_exit
from forge.cli.output import JSON_OPTION, print_json
from forge.identity.names import valid_id
from forge.identity.roles import ROLES, record_role
from forge.store.db import Database
from forge.store.models import TenantRole
from forge.store.timestamps import iso

app = typer.Typer(help="Roles per tenant: learner, instructor, operator.",
                  no_args_is_help=True)
ID_RULE = "1-128 characters of letters, digits and . _ @ : -"


def _ids(tenant: str, subject: str) -> None:
    if not valid_id(tenant):
        raise typer.BadParameter(ID_RULE, param_hint="--tenant")
    if not valid_id(subject):
        raise typer.BadParameter(ID_RULE, param_hint="--subject")


def _recorded(db: Database, tenant: str, subject: str) -> dict[str, Any] | None:
    """The recorded role of (tenant, subject), who set it, when, and the groups (None:
    none recorded, a learner)."""
    with db.read() as sess:
        row = sess.get(TenantRole, (tenant, subject))
        return None if row is None else {
            "tenant": row.tenant_id, "subject": row.subject, "role": row.role,
            "source": row.source, "updated_at": iso(row.updated_at),
            "groups": list(row.groups)}


@app.command("set")
def set_cmd(
    tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
    subject: str = typer.Option(..., "--subject", help="The person's account id."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
) -> None:
    """Set a person's role in a tenant (someone who signs in through an identity provider
    gets the provider's role again at their next sign-in)."""
    _ids(tenant, subject)
    if role not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}", param_hint="--role")
    db = open_db(settings_or_exit())
    before = _recorded(db, tenant, subject)
    record_role(db, tenant, subject, role, groups=None, source="operator")
    was = "was a learner (no role recorded before)" if before is None else \
        f"was {before['role']} (from {before['source']})"
    typer.echo(f"{tenant}/{subject} is now {role}; {was}")
    if before is not None and before["source"] == "oidc":
        typer.echo("note: this person signs in through the identity provider, which sets "
                   "the role again at their next sign-in", err=True)


@app.command("show")
def show_cmd(
    tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
    subject: str = typer.Option(..., "--subject", help="The person's account id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a person's recorded role, who set it and when (none recorded: a learner)."""
    _ids(tenant, subject)
    found = _recorded(open_db(settings_or_exit()), tenant, subject)
    if as_json:
        print_json(found or {"tenant": tenant, "subject": subject, "role": "learner",
                             "source": None, "updated_at": None, "groups": []})
        return
    if found is None:
        typer.echo(f"{tenant}/{subject}: learner (no role recorded)")
        return
    typer.echo(f"{tenant}/{subject}: {found['role']} (set by {found['source']} at "
               f"{found['updated_at']})")
