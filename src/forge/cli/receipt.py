"""`forge receipt mint`: an operator issues a receipt (e.g. for an invoice paid offline)."""

from __future__ import annotations

import typer

from forge.billing.receipts import CheckoutError, issue_receipt
from forge.cli.context import plans_or_exit, settings_or_exit
from forge.cli.output import keep_stdout_private

app = typer.Typer(help="Billing receipts.", no_args_is_help=True)


@app.command()
def mint(
    tenant: str = typer.Option(..., "--tenant"),
    plan: str = typer.Option(..., "--plan"),
    subject: str | None = typer.Option(None, "--subject", help="Bind to one learner."),
    days: int = typer.Option(30, "--days", help="Validity in days (1-366)."),
) -> None:
    """Print a receipt token for the plan (send it as the x-receipt-token header)."""
    # `> receipt.txt` is made owner-only first: whoever holds the receipt signs in as its
    # learner and spawns on the plan.
    keep_stdout_private("the receipt")
    settings = settings_or_exit()
    catalog = plans_or_exit(settings)
    try:
        receipt = issue_receipt(settings, catalog, tenant_id=tenant,
                                plan=plan, subject=subject, days=days)
    except CheckoutError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(receipt.token)
    typer.echo(f"note: whoever holds this receipt spawns on plan {plan} for {days} days: "
               "send it to the buyer alone", err=True)
