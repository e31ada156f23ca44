"""`forge credential list|revoke`: Open Badges credentials issued from passing verdicts.

Revoking sets the credential's bit in the revocation status list the scoreboard publishes
(`/v1/credentials/status/1`, signed on each request); a verifier given that list reports
the credential as revoked. A revocation is never undone.
"""

from __future__ import annotations

import typer

from forge.cli.context import open_db, settings_or_exit
from forge.cli.output import JSON_OPTION, cell, print_json, print_table
from forge.store.issued_credentials import get_credential, list_credentials, revoke_credential
from forge.store.models import IssuedCredential
from forge.store.timestamps import iso

app = typer.Typer(help="Credentials (Open Badges 3.0) issued from passing verdicts.",
                  no_args_is_help=True)


def _row(c: IssuedCredential) -> dict[str, object]:
    return {"credential_id": c.credential_id, "scenario_id": c.scenario_id,
            "tenant_id": c.tenant_id, "subject": c.subject, "key_id": c.key_id,
            "status_index": c.status_index, "issued_at": iso(c.issued_at),
            "revoked_at": iso(c.revoked_at),
            "revoke_reason": c.revoke_reason}


@app.command("list")
def list_cmd(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Issued credentials, oldest first, with their revocation state."""
    rows = [_row(c) for c in list_credentials(open_db(settings_or_exit()), tenant)]
    if as_json:
        print_json({"credentials": rows})
        return
    print_table(("CREDENTIAL_ID", "SCENARIO", "TENANT", "SUBJECT", "ISSUED", "REVOKED"),
                ([str(r["credential_id"]), str(r["scenario_id"]), str(r["tenant_id"]),
                  str(r["subject"]), str(r["issued_at"]), cell(r["revoked_at"])]
                 for r in rows))


@app.command()
def revoke(
    credential_id: str = typer.Argument(..., help="The credential id (urn:uuid:…)."),
    reason: str = typer.Option("revoked by the operator", "--reason",
                               help="Kept with the credential (not published)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a credential: the published status list marks it from the next fetch on."""
    db = open_db(settings_or_exit())
    if get_credential(db, credential_id) is None:
        typer.echo(f"error: no credential {credential_id!r} (see `forge credential list`)",
                   err=True)
        raise typer.Exit(1)
    row = revoke_credential(db, credential_id, reason)
    assert row is not None
    if as_json:
        print_json(_row(row))
    else:
        typer.echo(f"{row.credential_id}: revoked at {row.revoked_at:%Y-%m-%dT%H:%M:%SZ} "
                   f"(scenario {row.scenario_id}); verifiers see it in the next status list")
