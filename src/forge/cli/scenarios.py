"""`forge scenarios fail|regrade|destroy ID`: get a scenario out of any state, by hand."""

from __future__ import annotations

import httpx
import typer

from forge.cli.context import service_url, settings_or_exit, unreachable_next_step
from forge.lifecycle.scenario_ids import is_scenario_id

app = typer.Typer(help="Operator actions on one scenario (through the orchestrator).",
                  no_args_is_help=True)
REASON = typer.Option("operator action", "--reason", help="Kept in the scenario's audit log.")


def _act(action: str, scenario_id: str, reason: str) -> None:
    if not is_scenario_id(scenario_id):  # before any request: it goes into the URL's path
        typer.echo("error: scenario_id: expected scn-<16 lowercase hex digits>", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()
    url = service_url(settings, "ORCHESTRATOR_URL", str(settings.orchestrator_url))
    try:
        resp = httpx.post(
            f"{url}/v1/admin/scenarios/{scenario_id}/{action}", json={"reason": reason},
            headers={"authorization": f"Bearer {settings.operator.current.decode()}"},
            timeout=600,
        )
    except httpx.TransportError as exc:
        typer.echo(f"error: orchestrator unreachable at {url} ({type(exc).__name__})"
                   + unreachable_next_step(settings, "ORCHESTRATOR_URL"), err=True)
        raise typer.Exit(1) from None
    if resp.status_code != 200:
        try:
            body = resp.json()
            detail = f"{body.get('error')}: {body.get('message')}"
        except ValueError:
            detail = resp.text[:200]
        typer.echo(f"error: HTTP {resp.status_code} {detail}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{scenario_id}: {action} -> {resp.json()['state']}")


@app.command("fail")
def fail(scenario_id: str, reason: str = REASON) -> None:
    """End an unfinished scenario as failed (lab torn down, quota slot freed)."""
    _act("fail", scenario_id, reason)


@app.command("regrade")
def regrade(scenario_id: str, reason: str = REASON) -> None:
    """Grade a running lab now, or resume one stuck in grading."""
    _act("regrade", scenario_id, reason)


@app.command("destroy")
def destroy(scenario_id: str, reason: str = REASON) -> None:
    """Tear the lab down now, whatever the scenario's state."""
    _act("destroy", scenario_id, reason)
