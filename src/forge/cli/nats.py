"""`forge nats restart-subscriber`: ask running services to restart their NATS subscribers."""

from __future__ import annotations

import httpx
import typer

from forge.bus.permissions import SERVICE_IDENTITIES
from forge.cli.context import service_url, settings_or_exit
from forge.cli.output import keep_stdout_private
from forge.config.settings import ConfigError
from forge.services.common.bus import bus_auth

app = typer.Typer(help="NATS operations.", no_args_is_help=True)
DEFAULT_URLS = {
    "spawn": ("SPAWN_URL", "http://127.0.0.1:8082"),
    "orchestrator": ("ORCHESTRATOR_URL", "http://127.0.0.1:8083"),
    "scoreboard": ("SCOREBOARD_URL", "http://127.0.0.1:8086"),
}


@app.command("auth-config")
def auth_config() -> None:
    """Print the nats-server `authorization` block for this environment's NATS passwords.

    One user per service with its subject permissions; a password's _NEXT and _PREVIOUS
    are accepted too, so a rotation can roll service by service. Include the output in the
    server's config and reload it (`nats-server --signal reload`). It contains passwords.
    """
    settings = settings_or_exit()
    try:
        for identity in SERVICE_IDENTITIES:
            settings.nats_password(identity)
    except ConfigError as exc:
        typer.echo(f"error: {'; '.join(exc.problems)}", err=True)
        raise typer.Exit(1) from None
    keep_stdout_private("every service's NATS password")
    typer.echo(bus_auth(settings).server_config(), nl=False)
    typer.echo("note: this holds every service's NATS password: write it only to a file "
               "root alone reads (umask 077)", err=True)


def _restart(label: str, url: str, token: str) -> bool:
    """POST the restart to one service at `url`; print what it says; False when it failed."""
    try:
        resp = httpx.post(f"{url}/v1/admin/nats/restart-subscriber", timeout=30,
                          headers={"authorization": f"Bearer {token}"})
    except httpx.TransportError as exc:
        typer.echo(f"{label}: unreachable at {url} ({type(exc).__name__})", err=True)
        return False
    if resp.status_code != 200:
        typer.echo(f"{label}: HTTP {resp.status_code} {resp.text[:200]}", err=True)
        return False
    for durable, ok in resp.json()["restarted"].items():
        typer.echo(f"{label}: {durable} {'connected' if ok else 'restarted, not yet connected'}")
    return True


def _other_nodes(url: str, token: str) -> list[tuple[str, str]]:
    """(node id, URL) of every other lab node the orchestrator at `url` knows alive: each
    runs its own subscribers. A node stopped cleanly (listed "stopped" for the grace
    period) or lost runs none, and whatever listens at its URL now is not sent the
    operator token. Printed and empty when the list cannot be had."""
    try:
        resp = httpx.get(f"{url}/v1/admin/nodes", timeout=30,
                         headers={"authorization": f"Bearer {token}"})
        items = resp.json()["items"] if resp.status_code == 200 else None
    except (httpx.TransportError, ValueError, KeyError, TypeError):
        items = None
    if not isinstance(items, list):
        typer.echo("note: the other lab nodes could not be listed (`forge nodes list`); with "
                   "several nodes, run this once per node with ORCHESTRATOR_URL=<its URL> "
                   "--service orchestrator", err=True)
        return []
    own = url.rstrip("/")
    return [(str(item["node_id"]), str(item["url"]).rstrip("/")) for item in items
            if isinstance(item, dict) and item.get("state") == "alive" and not item.get("self")
            and isinstance(item.get("url"), str) and item["url"].rstrip("/") != own]


@app.command("restart-subscriber")
def restart_subscriber(
    service: list[str] = typer.Option(
        ["orchestrator", "scoreboard", "spawn"], "--service",
        help="spawn, orchestrator or scoreboard (repeatable; default all three).",
    ),
) -> None:
    """POST /v1/admin/nats/restart-subscriber on each service with the operator token; for
    the orchestrator, on every live lab node (`forge nodes list`), each with its own."""
    settings = settings_or_exit()
    token = settings.operator.current.decode()
    failed = False
    for name in service:
        if name not in DEFAULT_URLS:
            raise typer.BadParameter(f"unknown service {name!r}", param_hint="--service")
        env_var, default = DEFAULT_URLS[name]
        url = service_url(settings, env_var, default)
        if not _restart(name, url, token):
            failed = True
            continue
        if name == "orchestrator":
            for node_id, node_url in _other_nodes(url, token):
                failed = not _restart(f"orchestrator {node_id}", node_url, token) or failed
    if failed:
        raise typer.Exit(1)
