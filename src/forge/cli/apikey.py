"""`forge apikey create|revoke|list`: learner API keys issued by an operator."""

from __future__ import annotations

import asyncio

import httpx
import typer

from forge.cli.context import open_db, service_url, settings_or_exit
from forge.cli.output import JSON_OPTION, cell, keep_stdout_private, print_json, print_table
from forge.config.settings import Settings
from forge.identity.apikeys import (
    VerifiedKey,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from forge.services.spawn.terminal_signout import NodeCloses, close_node_terminals
from forge.store.db import Database
from forge.store.timestamps import iso

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
    """Revoke a key: it signs in no more, the browser sessions it opened end, and the
    learner's open lab terminals are closed (a socket opened with it is already past the
    key check)."""
    settings = settings_or_exit()
    db = open_db(settings)
    owner = revoke_api_key(db, key_id)
    if owner is None:
        typer.echo(f"no live key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
    ended = asyncio.run(_close_terminals(settings, db, owner))
    typer.echo(f"closed {ended.closed} open terminal session(s) of {owner.subject}")
    if ended.unreached:
        typer.echo(f"warning: the node of {ended.unreached} running lab(s) did not answer; "
                   "terminals open there end at their idle limit", err=True)


async def _close_terminals(settings: Settings, db: Database, owner: VerifiedKey) -> NodeCloses:
    """End the key owner's terminal sessions on the nodes holding their running labs. A lab
    without a node URL is on ORCHESTRATOR_URL: unset, where the `forge up` running on this
    storage root serves it (as `forge scenarios` calls it), never a default port."""
    where = service_url(settings, "ORCHESTRATOR_URL", str(settings.orchestrator_url))
    settings = settings.model_copy(update={"orchestrator_url": where})
    async with httpx.AsyncClient() as http:
        return await close_node_terminals(settings, db, http, owner.tenant_id, owner.subject)


@app.command("list")
def list_keys(tenant: str | None = typer.Option(None, "--tenant"),
              as_json: bool = JSON_OPTION) -> None:
    """List keys (never their secrets)."""
    db = open_db(settings_or_exit())
    keys = [{"key_id": k.key_id, "tenant": k.tenant_id, "subject": k.subject,
             "created": iso(k.created_at),
             "revoked": iso(k.revoked_at)}
            for k in list_api_keys(db, tenant)]
    if as_json:
        print_json({"keys": keys})
        return
    print_table(("KEY_ID", "TENANT", "SUBJECT", "CREATED", "REVOKED"),
                ([str(k["key_id"]), str(k["tenant"]), str(k["subject"]), str(k["created"]),
                  cell(k["revoked"])] for k in keys))
