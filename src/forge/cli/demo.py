"""`forge demo`: one full learner journey, end to end; exit 0 only if the verdict verified."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import NoReturn

import httpx
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from forge.billing.receipts import issue_receipt
from forge.cli.context import plans_or_exit
from forge.cli.lab_sweep import held_labs, teardown_labs
from forge.cli.new_root import NewRoot
from forge.cli.up import build_needed_images, prepare
from forge.config import Settings
from forge.content import SOLUTIONS, content_path
from forge.services.common.bus import bus_auth
from forge.signing.keystore import keyring_dir
from forge.stack.journey import Journey, JourneyError, JourneyResult
from forge.stack.supervisor import DEFAULT_PORTS, StartRefused, Supervisor
from forge.templates.dsl_limits import LEARNER_HOST
from forge.templates.registry import LAB_TEST_SUFFIX, TemplateRegistry

console = Console()
STAGES = 8
DEMO_PLAN = "PRO"  # what the journey buys (stage "buy a plan")
HOST_SECTION = re.compile(r"(?m)^# host: ")  # a solution typed in several terminals
# The next step when a port of the demo's own platform is taken (README, `make demo`).
PORT_TAKEN = ("; free it (`ss -ltnp` names who holds it) or give the demo other ports: "
              "--spawn-port, --orchestrator-port, --scoreboard-port (with make: "
              "make demo DEMO_ARGS=\"--spawn-port 9082 --orchestrator-port 9083 "
              "--scoreboard-port 9086\")")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _summary(result: JourneyResult, platform: str) -> Table:
    table = Table(title=f"Forge demo: {platform}", show_lines=False)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("result")
    for stage in result.stages:
        table.add_row(stage.name, f"{stage.seconds:.2f}", stage.detail)
    table.add_section()
    table.add_row("scenario", "", result.scenario_id or "-")
    if result.score is not None:
        table.add_row("score", "", f"{result.score:.2f} ({result.passed}/{result.total} "
                                   "criteria)")
    for name, path in result.artifacts.items():
        table.add_row(name, "", str(path))
    verdict = "[green]verified (PASS)[/]" if result.verified else "[red]NOT verified[/]"
    table.add_row("verdict", "", verdict)
    return table


def demo_lab(settings: Settings, lab: str | None) -> tuple[str, Path] | None:
    """(track, reference solution) of the lab `--lab` names, or None for the default lab.
    Refused (exit 2, naming the option) unless the demo can run it: a loaded lab that the
    PRO plan it buys includes, whose solution is typed in one terminal."""
    if lab is None:
        return None
    registry = TemplateRegistry.load(settings.templates_dir)
    if lab not in registry.names():
        _refuse(f"--lab: unknown lab {lab!r}; labs: {', '.join(registry.names())}")
    template = registry.get(lab).template
    track, tier = template.track or "", template.tier or ""
    plan = plans_or_exit(settings).get(DEMO_PLAN)
    if plan is None or track not in plan.tracks or tier not in plan.tiers:
        _refuse(f"--lab: {lab} ({track}, {tier}) is not in the {DEMO_PLAN} plan the demo buys")
    solution = _solution(settings, lab)
    if HOST_SECTION.search(solution.read_text(encoding="utf-8")):
        _refuse(f"--lab: {lab}'s solution is typed on several hosts; the demo types in one "
                "terminal (use `forge lab test` for it)")
    return track, solution


def _solution(settings: Settings, lab: str) -> Path:
    """The reference solution of `lab`: the file its test plan names (NAME.lab-test.yaml
    next to the template, as `forge lab new` writes it and `forge lab test` reads it), else
    the shipped solutions' NAME.sh. An authored lab was refused before ("no reference
    solution (NAME.sh)") though its author had written one, as the docs ask."""
    from forge.authoring.labtest import LabTestError, load_lab_test

    plan_path = settings.templates_dir / f"{lab}{LAB_TEST_SUFFIX}"
    shipped = content_path(SOLUTIONS) / f"{lab}.sh"
    if not plan_path.is_file():
        if not shipped.is_file():
            _refuse(f"--lab: {lab} has no reference solution: the demo types the one its "
                    f"test plan {plan_path.name} names (`forge lab new` writes it next to "
                    "the template)")
        return shipped
    try:
        plan = load_lab_test(plan_path)
    except LabTestError as exc:
        _refuse(f"--lab: {lab}'s test plan is invalid ({'; '.join(exc.problems)}): "
                f"`forge template check {plan_path}` lists its problems")
    if plan.host != LEARNER_HOST:
        _refuse(f"--lab: {lab}'s solution is typed on host {plan.host!r}; the demo types in "
                f"the {LEARNER_HOST!r} terminal (use `forge lab test {lab}` for it)")
    if plan.solution.file is None:
        _refuse(f"--lab: {lab}'s solution is written inside {plan_path.name}; the demo types "
                "a solution file (solution: {file: NAME.solution.sh}), or use "
                f"`forge lab test {lab}`")
    solution = plan_path.parent / plan.solution.file
    if not solution.is_file():
        _refuse(f"--lab: {lab}'s solution {solution} does not exist ({plan_path.name} "
                "names it)")
    return solution


def _refuse(message: str) -> NoReturn:
    console.print(f"[red]{message}[/]", markup=True, highlight=False)
    raise typer.Exit(2)


DEFAULT_SPAWN_URL = "http://127.0.0.1:8082"
DEFAULT_BOARD_URL = "http://127.0.0.1:8086"


def register(app: typer.Typer) -> None:
    """Add the `demo` command."""

    @app.command()
    def demo(
        url: str | None = typer.Option(
            None, "--url", help="spawn_service of a running platform: the demo runs against "
            "it, or fails when it is not ready. Default: http://127.0.0.1:<--spawn-port> "
            f"({DEFAULT_SPAWN_URL}) if a platform answers there, else the demo starts one."),
        scoreboard_url: str | None = typer.Option(
            None, "--scoreboard-url", help="Its scoreboard (default "
            f"http://127.0.0.1:<--scoreboard-port>, {DEFAULT_BOARD_URL})."),
        storage: Path | None = typer.Option(None, "--storage", help="Storage root."),
        timeout: float = typer.Option(180.0, "--timeout", min=1, max=86400,
                                      help="Seconds per waiting stage."),
        spawn_port: int = typer.Option(DEFAULT_PORTS["spawn"], "--spawn-port", min=0,
                                       max=65535,
                                       help="Ports of the platform: one ready there is "
                                       "used, else the demo starts one on them."),
        orchestrator_port: int = typer.Option(DEFAULT_PORTS["orchestrator"],
                                              "--orchestrator-port", min=0, max=65535),
        scoreboard_port: int = typer.Option(DEFAULT_PORTS["scoreboard"], "--scoreboard-port",
                                            min=0, max=65535),
        lab: str | None = typer.Option(
            None, "--lab", help="Which lab to run (a template name); default: the netplus "
            "track's default lab. It must be in the PRO plan and solved in one terminal."),
        trusted_key: Path | None = typer.Option(
            None, "--trusted-key", exists=True, help="The platform's public keys (a PEM "
            "file or a directory of them, from `forge keys export-public`) to prove who "
            "signed the verdict; default: this storage root's signing keyring, used when "
            "the demo starts the platform or finds its results here."),
    ) -> None:
        """Buy, spawn, solve through the terminal, submit, and verify the signed verdict."""
        made = NewRoot()  # the storage root as it was, and what the demo wrote there
        # (no lock held: a `forge up` on this root may be the platform the demo uses)
        env, settings = prepare(None, storage, made=made)
        chosen = demo_lab(settings, lab)
        supervisor: Supervisor | None = None
        platform = "the platform already running"
        named = url is not None or scoreboard_url is not None
        # Unnamed, the platform is looked for on the ports given (8082/8086 by default): a
        # `forge up --spawn-port P …` is used by `forge demo --spawn-port P …`, not started
        # again on its own storage root and refused.
        url = url or f"http://127.0.0.1:{spawn_port}"
        scoreboard_url = scoreboard_url or f"http://127.0.0.1:{scoreboard_port}"
        if named and not (_ready(url) and _ready(scoreboard_url)):
            # Asked to check that platform (e.g. after a rotation): say so, start nothing.
            console.print(f"[red]demo failed:[/] the platform at {url} (scoreboard "
                          f"{scoreboard_url}) is not ready: see each service's /readyz")
            raise typer.Exit(1)
        if not (_ready(url) and _ready(scoreboard_url)):
            platform = "a platform started for the demo, stopped again"
            build_needed_images(settings)  # first use builds them; cached after
            supervisor = Supervisor(env, settings.storage_root,
                                    ports={"spawn": spawn_port,
                                           "orchestrator": orchestrator_port,
                                           "scoreboard": scoreboard_port},
                                    bus_auth=bus_auth(settings),
                                    report=lambda m: console.print(f"[yellow]{m}[/]"))
            url, scoreboard_url = supervisor.url("spawn"), supervisor.url("scoreboard")
        result = JourneyResult()
        failure: str | None = None
        started = False  # the demo's own platform ran: its labs are the demo's to destroy
        refused = False  # its own platform was refused: what it wrote to the root goes again
        # Labs a stopped `forge up` kept for its next start are its learners': not the demo's.
        kept = held_labs(settings) if supervisor is not None else frozenset()
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console) as progress:
            overall = progress.add_task("bring the platform up", total=STAGES + 1)
            try:
                if supervisor is not None:
                    made.writing()
                    try:
                        supervisor.start()
                    except StartRefused as exc:
                        refused = True
                        raise JourneyError(f"platform not started: {exc}"
                                           + (PORT_TAKEN if exc.port_taken else "")) from None
                    started = True
                    if not supervisor.wait_ready(timeout):
                        raise JourneyError(f"platform not ready; logs in "
                                           f"{settings.storage_root / 'logs'}")
                progress.advance(overall)

                def on_stage(name: str) -> None:
                    progress.update(overall, description=name)
                    if progress.tasks[0].completed < STAGES:
                        progress.advance(overall)

                def mint(tenant: str, learner: str) -> str:
                    catalog = plans_or_exit(settings)
                    return issue_receipt(settings, catalog, tenant_id=tenant, plan=DEMO_PLAN,
                                         subject=learner, days=1).token

                journey = Journey(url, scoreboard_url, settings.storage_root,
                                  on_stage=on_stage, timeout_s=timeout, result=result,
                                  mint_receipt=mint, trusted_key=trusted_key,
                                  keyring=keyring_dir(settings.storage_root, env),
                                  own_platform=supervisor is not None)
                if chosen is not None:
                    journey.track, journey.solution = chosen
                    journey.lab = lab
                journey.run()
                progress.update(overall, completed=STAGES + 1, description="journey done")
            except JourneyError as exc:
                failure = str(exc)
            finally:
                if supervisor is not None:
                    supervisor.stop(keep_lock=True)  # held until its labs are destroyed
                # Refused (another `forge up` holds this storage root), the labs under it
                # are that platform's learners', never the demo's: destroy none of them.
                try:
                    if started:
                        for problem in teardown_labs(settings, keep=kept).failures:
                            console.print(f"lab teardown failed: {problem}", markup=False,
                                          highlight=False)
                finally:
                    if supervisor is not None:
                        supervisor.release_lock()
        if refused:
            made.remove(Console(stderr=True), "forge demo")
        else:  # kept: what it generated is said now, not before a removal
            for line in made.later:
                Console(stderr=True).print(line, markup=False)
        console.print(_summary(result, platform))
        if failure or not result.verified:
            console.print(f"[red]demo failed:[/] {failure or 'verdict not verified'}")
            raise typer.Exit(1)
        a = result.artifacts
        words = [str(Path(a[n]).absolute())
                 for n in ("score.json", "bundle", "verdict.sig", "verdict.pub")]
        if result.trusted_keys is not None:
            words += ["--trusted-key", str(Path(result.trusted_keys).absolute())]
        # The runbook's command where this is a checkout (its script is relative: said
        # where to run it); else the same code installed with Forge.
        if Path("scripts/verify_verdict.py").is_file():
            console.print(f"[green]The verdict verifies offline. Run it yourself, in "
                          f"{Path.cwd()}:[/]")
            command = "python scripts/verify_verdict.py "
        else:
            console.print("[green]The verdict verifies offline. Run it yourself:[/]")
            command = "forge verify "
        console.print(command + " ".join(shlex.quote(w) for w in words), markup=False,
                      soft_wrap=True)
        if result.trusted_keys is None:
            console.print("[yellow]Integrity only:[/] the platform's public keys were not "
                          "used (its results came from elsewhere and no --trusted-key was "
                          "given), so this does not prove the platform signed the verdict. "
                          "Run the demo again with --trusted-key and the keys from "
                          "`forge keys export-public` on the platform's machine.")
