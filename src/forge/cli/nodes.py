"""`forge nodes list|drain|undrain`: the lab nodes, through any orchestrator (operator token)."""

from __future__ import annotations

from typing import Any

import httpx
import typer

from forge.cli.context import service_url, settings_or_exit, unreachable_next_step
from forge.cli.output import JSON_OPTION, cell, print_json, print_table
from forge.config.node_settings import NODE_ID_RE

app = typer.Typer(help="Lab nodes: list them, drain one for maintenance, undrain it.",
                  no_args_is_help=True)


def _call(method: str, path: str) -> dict[str, Any]:
    settings = settings_or_exit()
    url = service_url(settings, "ORCHESTRATOR_URL", str(settings.orchestrator_url))
    try:
        resp = httpx.request(method, f"{url}{path}", timeout=30, headers={
            "authorization": f"Bearer {settings.operator.current.decode()}"})
    except httpx.TransportError as exc:
        # The node ORCHESTRATOR_URL names may be the lost one the operator is looking for.
        another = ("; ORCHESTRATOR_URL names the lab node to ask: any live node answers for "
                   "all of them, so set it to another node's FORGE_NODE_URL")
        typer.echo(f"error: orchestrator unreachable at {url} ({type(exc).__name__})"
                   + unreachable_next_step(settings, "ORCHESTRATOR_URL", another), err=True)
        raise typer.Exit(1) from None
    try:
        body = resp.json()
    except ValueError:
        body = {"error": "backend_error", "message": resp.text[:200]}
    if resp.status_code != 200 or not isinstance(body, dict):
        detail = f"{body.get('error')}: {body.get('message')}" if isinstance(body, dict) else ""
        typer.echo(f"error: HTTP {resp.status_code} {detail}", err=True)
        raise typer.Exit(1)
    return body


def _checked(node_id: str) -> str:
    if not NODE_ID_RE.fullmatch(node_id):
        typer.echo("error: NODE_ID must be 1-32 of a-z, 0-9 and - (a FORGE_NODE_ID)", err=True)
        raise typer.Exit(2)
    return node_id


@app.command("list")
def list_nodes(as_json: bool = JSON_OPTION) -> None:
    """Every node: id, url, labs used/capacity, memory, draining, heartbeat age, state."""
    body = _call("GET", "/v1/admin/nodes")
    if as_json:  # the orchestrator's own answer, unchanged
        print_json(body)
        return
    print_table(("NODE", "URL", "LABS", "MEMORY_MB", "DRAINING", "HEARTBEAT", "STATE"), ((
        item["node_id"] + (" *" if item.get("lease") else ""), cell(item["url"]),
        f"{item['labs_in_use']}/{cell(item['capacity_labs'])}",
        f"{cell(item['memory_in_use_mb'])}/{cell(item['capacity_memory_mb'])}",
        cell(item["draining"]).lower(), cell(item["heartbeat_age_s"], " s ago"),
        str(item["state"])) for item in body["items"]))
    typer.echo(f"(* holds the sweeper lease; a node is lost after {body['grace_s']:g} s "
               "without a heartbeat)")


@app.command("drain")
def drain(node_id: str = typer.Argument(..., help="The node's FORGE_NODE_ID.")) -> None:
    """Stop placing new labs on the node; its running labs finish as usual."""
    _call("POST", f"/v1/admin/nodes/{_checked(node_id)}/drain")
    typer.echo(f"{node_id}: draining (no new labs from its next heartbeat on)")


@app.command("undrain")
def undrain(node_id: str = typer.Argument(..., help="The node's FORGE_NODE_ID.")) -> None:
    """Let the node take new labs again."""
    _call("POST", f"/v1/admin/nodes/{_checked(node_id)}/undrain")
    typer.echo(f"{node_id}: taking new labs")
