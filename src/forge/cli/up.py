"""`forge up`: the whole platform on one machine, supervised, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from forge.bus.permissions import SERVICE_IDENTITIES
from forge.config.settings import ConfigError, Settings, load_settings
from forge.services.common.bus import bus_auth
from forge.signing.keystore import SigningKeyring, keyring_dir
from forge.stack.envfile import EnvFileError, read_env_file
from forge.stack.supervisor import DEFAULT_PORTS, StartRefused, Supervisor

console = Console(stderr=True)


def prepare(env_file: Path | None, storage: Path | None) -> tuple[dict[str, str], Settings]:
    """The environment every child gets, validated as a service would validate it."""
    env = dict(os.environ)
    if env_file is not None:
        try:
            env.update(read_env_file(env_file))
        except (OSError, EnvFileError) as exc:
            console.print(f"[red]--env-file:[/] {exc}")
            raise typer.Exit(1) from None
    if storage is not None:
        env["STORAGE_ROOT"] = str(storage.absolute())
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        console.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    env["STORAGE_ROOT"] = str(settings.storage_root)
    if settings.env.is_dev:
        key, created = SigningKeyring(keyring_dir(settings.storage_root)).ensure()
        if created:
            console.print(f"dev: generated verdict signing key {key.key_id}")
    return env, settings


def status_table(sup: Supervisor, ready: dict[str, bool]) -> Table:
    table = Table("service", "url", "ready", "restarts", box=None)
    for name, child in sup.children.items():
        table.add_row(name, sup.url(name), "[green]yes[/]" if ready.get(name) else "[yellow]no[/]",
                      str(child.restarts))
    nats = sup.nats_child
    if nats is not None and sup.nats is not None:
        table.add_row("nats", sup.nats.url, "[green]yes[/]" if nats.ready else "[yellow]no[/]",
                      str(nats.restarts))
    return table


def teardown_labs(settings: Settings) -> int:
    """Destroy every lab of this installation (for `--teardown-labs`)."""
    from forge.runtime.factory import make_runtime

    runtime = make_runtime(settings)
    labs = runtime.list()
    for info in labs:
        runtime.destroy(info.lab_id)
    runtime.close()
    return len(labs)


def register(app: typer.Typer) -> None:
    """Add the `up` command."""

    @app.command()
    def up(
        env_file: Path | None = typer.Option(None, "--env-file", help="KEY=value file."),
        storage: Path | None = typer.Option(None, "--storage", help="Storage root."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address the services bind."),
        spawn_port: int = typer.Option(DEFAULT_PORTS["spawn"], "--spawn-port"),
        orchestrator_port: int = typer.Option(DEFAULT_PORTS["orchestrator"],
                                              "--orchestrator-port"),
        scoreboard_port: int = typer.Option(DEFAULT_PORTS["scoreboard"], "--scoreboard-port"),
        nats_port: int = typer.Option(0, "--nats-port", min=0, max=65535,
                                      help="Port of the embedded NATS (127.0.0.1); 0 picks a "
                                           "free one, kept across NATS restarts."),
        teardown: bool = typer.Option(False, "--teardown-labs/--keep-labs",
                                      help="Destroy running labs on exit (default: keep them "
                                           "for reconciliation at the next start)."),
        ready_timeout: float = typer.Option(120.0, "--ready-timeout"),
    ) -> None:
        """Start NATS and the three services; print URLs; stop everything on Ctrl-C."""
        env, settings = prepare(env_file, storage)
        problems: list[str] = []
        for identity in SERVICE_IDENTITIES:  # every service must be able to join the bus
            try:
                settings.nats_password(identity)
            except ConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            console.print(str(ConfigError(settings.env.value, problems)), markup=False)
            raise typer.Exit(1)
        sup = Supervisor(env, settings.storage_root, host,
                         {"spawn": spawn_port, "orchestrator": orchestrator_port,
                          "scoreboard": scoreboard_port},
                         bus_auth=bus_auth(settings), nats_port=nats_port,
                         report=lambda msg: console.print(f"[yellow]{msg}[/]"))
        stopping = False

        def on_signal(_sig: int, _frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            sup.start()
        except StartRefused as exc:  # nothing was started (or it was all stopped again)
            console.print(f"forge up: {exc}", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
        console.print(f"storage {settings.storage_root} · NATS {env['NATS_URL']} · "
                      f"logs {settings.storage_root / 'logs'}")
        ready = False
        try:
            deadline = time.monotonic() + ready_timeout
            with Live(status_table(sup, {}), console=console, refresh_per_second=2) as live:
                while not stopping:
                    state = sup.poll()
                    live.update(status_table(sup, state))
                    if sup.came_up and not ready:
                        ready = True
                        live.console.print(f"[green]Forge is up.[/] Learner UI: "
                                           f"{sup.url('spawn')}/  (Ctrl-C to stop)")
                    if not ready and time.monotonic() > deadline:
                        live.console.print("[red]services did not become ready; see the logs[/]")
                        break
                    time.sleep(0.5)
        finally:
            console.print("stopping…")
            sup.stop()
            if teardown:
                console.print(f"destroyed {teardown_labs(settings)} lab(s)")
            console.print("stopped.")
        if not ready:
            sys.exit(1)
