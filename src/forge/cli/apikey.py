"""`forge apikey create|revoke|list`: learner API keys issued by an operator."""

from __future__ import annotations

import typer

from forge.cli.context import open_db, settings_or_exit
from forge.cli.output import JSON_OPTION, cell, keep_stdout_private, print_json, print_table
from forge.identity.apikeys import create_api_key, list_api_keys, revoke_api_key

app = typer.Typer(help="Learner API keys.", no_args_is_help=True)


@app.command()
def create(
    tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
    subject: str = typer.Option(..., "--subject", help="Learner id within the tenant."),
) -> None:
    """Issue a key; it is printed once and only its hash is stored."""
    # Before the key exists: `> learner.key` is made owner-only (anyone holding the key
    # signs in as the learner), and another user's file there gets no key and none is made.
    keep_stdout_private("the API key")
    db = open_db(settings_or_exit())
    try:
        issued = create_api_key(db, tenant, subject)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"key_id  {issued.key_id}")
    typer.echo(f"api_key {issued.plaintext}")
    typer.echo("note: the key is shown this once (only its hash is kept): hand it to the "
               "learner now; a lost key is revoked and a new one issued", err=True)


@app.command()
def revoke(key_id: str = typer.Argument(..., help="The key id to revoke.")) -> None:
    """Revoke a key."""
    db = open_db(settings_or_exit())
    if not revoke_api_key(db, key_id):
        typer.echo(f"no live key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@app.command("list")
def list_keys(tenant: str | None = typer.Option(None, "--tenant"),
              as_json: bool = JSON_OPTION) -> None:
    """List keys (never their secrets)."""
    db = open_db(settings_or_exit())
    keys = [{"key_id": k.key_id, "tenant": k.tenant_id, "subject": k.subject,
             "created": k.created_at.isoformat(),
             "revoked": k.revoked_at.isoformat() if k.revoked_at else None}
            for k in list_api_keys(db, tenant)]
    if as_json:
        print_json({"keys": keys})
        return
    print_table(("KEY_ID", "TENANT", "SUBJECT", "CREATED", "REVOKED"),
                ([str(k["key_id"]), str(k["tenant"]), str(k["subject"]), str(k["created"]),
                  cell(k["revoked"])] for k in keys))
