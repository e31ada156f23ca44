"""`forge up`: the whole platform on one machine, supervised, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from forge.bus.permissions import SERVICE_IDENTITIES
from forge.cli.config_check import migration_refusal, start_refusals, up_key_warning
from forge.cli.lab_sweep import LabTeardown, teardown_labs
from forge.cli.new_root import NewRoot
from forge.config.db_url import normalize_url
from forge.config.known_variables import unknown_variable_warnings
from forge.config.settings import ConfigError, Settings, load_settings
from forge.config.storage_root import UnsafeStorage
from forge.services.common.bus import bus_auth
from forge.signing.keystore import SigningKeyring, keyring_dir
from forge.stack.envfile import EnvFileError, read_env_file
from forge.stack.lock import StorageLock, StorageLocked
from forge.stack.supervisor import DEFAULT_PORTS, StartRefused, Supervisor
from forge.stack.topology import (
    TopologyError,
    check_nats_cluster,
    check_nodes,
    node_prefixes,
    plan,
)

console = Console(stderr=True)


def prepare(env_file: Path | None, storage: Path | None,
            refuse: Callable[[dict[str, str]], str | None] | None = None,
            made: NewRoot | None = None, hold: bool = False,
            ) -> tuple[dict[str, str], Settings]:
    """The environment every child gets, validated as a service would validate it;
    `refuse` may name a reason to stop (exit 2) before anything is created. `made` gets
    the storage root as it was before this start, and what its own writes left there;
    with `hold`, the root's lock is taken (into `made.lock`) before the first write, so
    a start racing this one, or a refused one cleaning up, never meets a half-written
    root (exit 1 naming the holder when another holds it)."""
    env = dict(os.environ)
    if env_file is not None:
        try:
            env.update(read_env_file(env_file))
        except (OSError, EnvFileError) as exc:
            # One line (a long path is not wrapped), the file's name never read as markup.
            console.print(Text.assemble(("--env-file:", "red"), f" {exc}"), soft_wrap=True)
            raise typer.Exit(1) from None
    if storage is not None:
        env["STORAGE_ROOT"] = str(storage.absolute())
    reason = refuse(env) if refuse is not None else None
    if reason is not None:
        console.print(f"forge up: {reason}", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    if made is not None:
        root = made.note(env.get("STORAGE_ROOT"))
        if hold:
            made.lock = _hold_root(root)
        made.writing()
    try:
        settings = load_settings(env)
        for warning in unknown_variable_warnings(env):  # a typo would pass unseen
            console.print(f"forge up: warning: {warning}", markup=False, soft_wrap=True)
        if settings.env.is_dev:
            key, created = SigningKeyring(keyring_dir(settings.storage_root)).ensure()
            if created:  # said once kept: a refused start removes it again
                line = f"dev: generated verdict signing key {key.key_id}"
                if made is None:
                    console.print(line)
                else:
                    made.later.append(line)
    except ConfigError as exc:
        console.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    except UnsafeStorage as exc:  # before a secret, key or byte of it is used
        console.print(f"forge: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if made is not None:
        made.settle()
    env["STORAGE_ROOT"] = str(settings.storage_root)
    return env, settings


def _hold_root(root: Path) -> StorageLock:
    """The storage root's lock for `forge up` (the root made when missing), or exit naming
    whoever holds it (another `forge up`, a cleanup, a `forge store copy`): 1, or 2 for a
    root another user owns or may write to."""
    try:
        return StorageLock.acquire(root)
    except (StorageLocked, OSError) as exc:
        advice = f"; {exc.advice}" if isinstance(exc, StorageLocked) else ""
        console.print(f"forge up: {exc}{advice}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except UnsafeStorage as exc:  # before a secret, key or byte of it is used
        console.print(f"forge: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def report_changes(out: Console, sup: Supervisor, was: dict[str, bool],
                   now: dict[str, bool], token: str) -> None:
    """One line per service whose readiness changed since ``was``: why it is not ready
    (its failed checks, or that it does not answer: a crashed or hung process), or that
    it is ready again."""
    for name, up in now.items():
        if was.get(name, up) == up:
            continue
        if up:
            out.print(f"{name}: ready again", markup=False, highlight=False)
        else:
            out.print(f"{name}: not ready: {sup.why_not_ready(name, token)}", markup=False,
                      highlight=False)


def status_table(sup: Supervisor, ready: dict[str, bool]) -> Table:
    """One row per service, lab node and nats-server: where it answers and how it fares."""
    table = Table("service", "node", "url", "ready", "restarts", box=None)
    for name, child in sup.children.items():
        table.add_row(name, child.node or "", sup.url(name),
                      "[green]yes[/]" if ready.get(name) else "[yellow]no[/]",
                      str(child.restarts))
    for member in sup.nats_members:
        table.add_row(member.name, "", member.server.url,
                      "[green]yes[/]" if member.ready else "[yellow]no[/]", str(member.restarts))
    return table


def status_key(sup: Supervisor, ready: dict[str, bool]) -> tuple[tuple[object, ...], ...]:
    """What the status table shows, to redraw it only when that changes."""
    rows: list[tuple[object, ...]] = [(name, sup.url(name), bool(ready.get(name)), c.restarts)
                                      for name, c in sup.children.items()]
    rows += [(m.name, m.server.url, m.ready, m.restarts) for m in sup.nats_members]
    return tuple(rows)


def store_label(db_url: str) -> str:
    """Which database every process uses, without its credentials."""
    from sqlalchemy.engine import make_url

    try:  # as the store reads it: postgres:// and PostgreSQL:// are PostgreSQL too
        url = make_url(normalize_url(db_url))
    except Exception:  # settings validated it; never echo a URL that may hold a password
        return "database (unparsed URL)"
    if url.get_backend_name() == "postgresql":
        where = f"{url.host or 'unix socket'}/{url.database or ''}"
        return f"PostgreSQL ({where})"
    name = "SQLite" if url.get_backend_name() == "sqlite" else url.get_backend_name()
    return f"{name} ({url.database})"


def build_needed_images(settings: Settings) -> None:
    """Build the images the templates need before anything starts (first use; cached
    after), a line per image and its time; a failure exits 1 with nothing started, since
    every lab on a missing image would fail at spawn. Templates that cannot be loaded are
    left to the services to report, as before."""
    from forge.cli.image import build_images, images_summary
    from forge.errors import ForgeError
    from forge.images.needed import template_images
    from forge.templates.problems import TemplateError

    try:
        names = template_images(settings.templates_dir)
        summary = images_summary(*build_images(names, settings, first_use=True))
    except TemplateError:
        # The services refuse such templates themselves, each with its own report.
        console.print("images: not checked (the templates cannot be loaded)",
                      markup=False, highlight=False)
        return
    except ForgeError as exc:
        console.print(f"forge up: {exc.message}; nothing was started (fix it, or build "
                      "by hand with forge image build NAME)", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(summary, markup=False, highlight=False)


def check_flags(nodes: int, nats_cluster: int, nats_port: int,
                teardown: bool | None) -> bool:
    """Refuse impossible flag combinations before anything starts; whether to tear down."""
    try:
        check_nodes(nodes)
        check_nats_cluster(nats_cluster)
    except TopologyError as exc:
        console.print(f"forge up: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    # With --nats-cluster N, --nats-port is the first of 3*N consecutive ports (client,
    # monitoring, route per server), so an operator can confine the cluster to a range.
    if nats_cluster > 1 and nats_port and nats_port + 3 * nats_cluster - 1 > 65535:
        console.print(f"forge up: --nats-port {nats_port}: a cluster of {nats_cluster} takes "
                      f"{3 * nats_cluster} ports from it, past 65535", markup=False,
                      soft_wrap=True)
        raise typer.Exit(2)
    if nodes > 1 and teardown is False:
        console.print("forge up: --keep-labs needs --nodes 1: keeping several nodes' labs "
                      "across a restart is not tested yet (docs/scale-out.md), so they are "
                      "destroyed on exit", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    return nodes > 1 if teardown is None else teardown


def register(app: typer.Typer) -> None:
    """Add the `up` command."""

    @app.command()
    def up(
        env_file: Path | None = typer.Option(None, "--env-file", help="KEY=value file."),
        storage: Path | None = typer.Option(None, "--storage", help="Storage root."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address the services bind."),
        spawn_port: int = typer.Option(DEFAULT_PORTS["spawn"], "--spawn-port", min=0, max=65535),
        orchestrator_port: int = typer.Option(DEFAULT_PORTS["orchestrator"],
                                              "--orchestrator-port", min=0, max=65535),
        scoreboard_port: int = typer.Option(DEFAULT_PORTS["scoreboard"], "--scoreboard-port",
                                            min=0, max=65535),
        nats_port: int = typer.Option(0, "--nats-port", min=0, max=65535,
                                      help="Port of the embedded NATS (127.0.0.1); 0 picks a "
                                           "free one, kept across NATS restarts."),
        teardown: bool | None = typer.Option(
            None, "--teardown-labs/--keep-labs",
            help="Destroy running labs on exit (default: keep them for reconciliation at "
                 "the next start; with --nodes > 1: destroy)."),
        ready_timeout: float = typer.Option(
            120.0, "--ready-timeout", min=1, max=86400, help="Seconds (1-86400) for every "
            "service to become ready at start; past them everything is stopped, naming each "
            "service's failed checks (a check failing later, once up, is reported and waited "
            "for instead)."),
        nodes: int = typer.Option(1, "--nodes", help="Lab nodes (orchestrators) to run, "
                                  "1-8, each with its own port and runtime prefix."),
        nats_cluster: int = typer.Option(1, "--nats-cluster", help="Embedded NATS servers: "
                                         "1, or a JetStream cluster of 3 or 5."),
        separate_storage: bool = typer.Option(
            False, "--separate-storage", help="Give each service and node its own "
            "STORAGE_ROOT, STORAGE/roots/<spawn|scoreboard|node-i> (services that share no "
            "disk; evidence crosses the bus, so verdicts verify, their files under "
            "roots/scoreboard/; docs/scale-out.md)."),
    ) -> None:
        """Start NATS and the services (N lab nodes); print URLs; stop everything on Ctrl-C."""
        teardown = check_flags(nodes, nats_cluster, nats_port, teardown)

        def refuse_early(env: dict[str, str]) -> str | None:
            """What stops the start before any key, secret or directory is made."""
            if nats_cluster > 1 and env.get("NATS_URL"):
                return ("--nats-cluster starts an embedded NATS cluster, but NATS_URL names "
                        "an external NATS; unset one of them")
            if env.get("FORGE_RUNTIME_PREFIX") and nodes > 1:
                try:
                    node_prefixes(env["FORGE_RUNTIME_PREFIX"], nodes)
                except TopologyError as exc:
                    return str(exc)
            return None

        made = NewRoot()  # the storage root as it was, and what this start wrote there
        try:
            env, settings = prepare(env_file, storage, refuse_early, made, hold=True)
            held = made.lock
            assert held is not None
            try:
                topology = plan(settings.storage_root,
                                {"spawn": spawn_port, "orchestrator": orchestrator_port,
                                 "scoreboard": scoreboard_port},
                                base_prefix=settings.runtime_prefix, nodes=nodes,
                                nats_servers=nats_cluster, separate_storage=separate_storage,
                                db_url=env.get("FORGE_DB_URL"))
            except TopologyError as exc:
                console.print(f"forge up: {exc}", markup=False, soft_wrap=True)
                raise typer.Exit(2) from None
            problems: list[str] = []
            for identity in SERVICE_IDENTITIES:  # every service must be able to join the bus
                try:
                    settings.nats_password(identity)
                except ConfigError as exc:
                    problems.extend(exc.problems)
            # spawn_service and the orchestrator would exit at every start (a crash loop until
            # --ready-timeout): said now, with nothing started, as `forge config check` says it
            problems.extend(start_refusals(settings))
            if problems:
                console.print(str(ConfigError(settings.env.value, problems)), markup=False)
                raise typer.Exit(1)
            # Said now, not only after --ready-timeout (each service's own root otherwise)
            key = None if separate_storage else up_key_warning(settings, ready_timeout, env)
            if key is not None:
                console.print(f"forge up: warning: {key}", markup=False, soft_wrap=True)
            # A migration the store refuses would make every service exit at each start (a
            # crash loop until --ready-timeout): migrated here first, so it is one line.
            made.writing()
            refused = migration_refusal(settings)
            made.settle()
            if refused is not None:
                console.print(f"forge up: not started, {refused}", markup=False, soft_wrap=True)
                raise typer.Exit(1)
            build_needed_images(settings)  # (minutes; other commands may write meanwhile)
            sup = Supervisor(env, settings.storage_root, host,
                             {"spawn": spawn_port, "orchestrator": orchestrator_port,
                              "scoreboard": scoreboard_port},
                             bus_auth=bus_auth(settings), nats_port=nats_port, topology=topology,
                             report=lambda msg: console.print(f"[yellow]{msg}[/]"))
            sup.lock = held
            stopping = False

            def on_signal(_sig: int, _frame: FrameType | None) -> None:
                nonlocal stopping
                stopping = True

            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
            made.writing()
            try:
                sup.start()
            except StartRefused as exc:  # nothing was started (or it was all stopped again)
                console.print(f"forge up: {exc}", markup=False, soft_wrap=True)
                raise typer.Exit(1) from None
        except typer.Exit as exc:  # refused: what it created goes again, under its lock
            if exc.exit_code:
                made.remove(console)
            if made.lock is not None:
                made.lock.release()
            raise
        except BaseException:  # Ctrl-C during the image build: nothing removed, so said
            for line in made.later:
                console.print(line, markup=False)
            raise
        for line in made.later:  # kept now
            console.print(line, markup=False)
        console.print(f"storage {settings.storage_root} · NATS {env['NATS_URL']} · "
                      f"logs {settings.storage_root / 'logs'}", markup=False, soft_wrap=True)
        console.print(f"store: {store_label(settings.db_url)} · {nodes} lab node(s) · "
                      f"{nats_cluster} NATS server(s)"
                      + (" · separate storage roots" if separate_storage else ""),
                      markup=False, soft_wrap=True)
        ready = False
        try:
            deadline = time.monotonic() + ready_timeout
            # Redrawn when something changed, not twice a second (idle CPU, issue 19).
            with Live(status_table(sup, {}), console=console, auto_refresh=False) as live:
                shown: object = None
                was: dict[str, bool] = {}
                while not stopping:
                    state = sup.poll()
                    if sup.lock is not None and sup.lock.keep_record():
                        live.console.print(
                            f"forge up: {sup.lock.path} was overwritten while forge up runs "
                            "(a backup copied over the storage root?); wrote this forge up's "
                            "pid and addresses into it again. Restore a backup only with "
                            "forge up stopped", markup=False, soft_wrap=True)
                    seen = status_key(sup, state)
                    if seen != shown:
                        live.update(status_table(sup, state), refresh=True)
                        shown = seen
                    if ready and not live.console.is_terminal:
                        # No live table (a log file, systemd): each change is a line.
                        report_changes(live.console, sup, was, state,
                                       settings.operator.current.decode())
                    was = state
                    if sup.came_up and not ready:
                        ready = True
                        if not live.console.is_terminal:  # no live table: print it once
                            live.console.print(status_table(sup, state))
                        live.console.print(f"[green]Forge is up.[/] Learner UI: "
                                           f"{sup.url('spawn')}/  (Ctrl-C to stop)")
                    if not ready and time.monotonic() > deadline:
                        live.console.print(f"[red]services did not become ready within "
                                           f"{ready_timeout:.0f} s (--ready-timeout); "
                                           "stopping everything[/]")
                        token = settings.operator.current.decode()
                        for name, up in sup.poll().items():
                            if not up:
                                live.console.print(f"{name}: {sup.why_not_ready(name, token)}",
                                                   markup=False, highlight=False)
                        break
                    time.sleep(0.5)
        finally:
            console.print("stopping…")
            sup.stop()
            torn = LabTeardown()
            if teardown:
                torn = teardown_labs(settings, topology, env)
                console.print(f"destroyed {torn.destroyed} lab(s)")
                for failure in torn.failures:
                    console.print(f"lab teardown failed: {failure}", markup=False,
                                  highlight=False)
            held.release()  # only now: no other start takes the root while labs go
            console.print("stopped.")
        if not ready or torn.failures:
            sys.exit(1)
