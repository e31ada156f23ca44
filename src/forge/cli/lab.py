"""`forge lab …`: scaffold a new lab and prove a lab with the real runtime (needs root).

`forge lab new NAME` writes a template, its test plan, a reference solution, a partial
solution and an image stub (docs/authoring.md); `forge lab test NAME…|--all` launches
each lab many times with the configured runtime, grades it as the orchestrator does and
prints a table per lab; exit 1 if any step fails. No service, bus or database is needed.
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import typer

from forge.cli.context import runtime_or_exit, settings_or_exit
from forge.errors import ForgeError
from forge.templates.problems import TemplateError

app = typer.Typer(help="Lab authoring: scaffold a lab, prove a lab.", no_args_is_help=True)

DIR = typer.Option(None, "--dir", help="Template directory [FORGE_TEMPLATE_DIR].")


@app.command("new")
def new(name: str = typer.Argument(..., help="The lab's name (a-z, 0-9, inner dashes)."),
        directory: Path | None = DIR,
        image_dir: Path | None = typer.Option(None, "--image-dir",
                                              help="Image definition directory "
                                                   "[FORGE_IMAGE_DIR].")) -> None:
    """Scaffold a lab that passes `forge lab test` as written; never overwrites a file."""
    from forge.authoring.scaffold import scaffold

    # Settings only for a folder not given, and without secrets: reading them in dev makes
    # a storage root (its dev secrets), which a scaffold never needs.
    templates_dir, images_dir = directory, image_dir
    if templates_dir is None or images_dir is None:
        settings = settings_or_exit(secrets=False)
        templates_dir = templates_dir or settings.templates_dir
        images_dir = images_dir or settings.images_dir
    try:
        written = scaffold(name, templates_dir, images_dir)
    except ForgeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2 if exc.status == 422 else 1) from None
    for path in written:
        typer.echo(f"created {path}")
    where = f" --dir {shlex.quote(str(directory))}" if directory is not None else ""
    typer.echo(f"next: edit them, then `forge lab test {name}{where}` (docs/authoring.md)")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGINT and SIGTERM end a lab test: its labs are destroyed on the way out. Both are
    set explicitly: a process started in the background inherits SIGINT ignored, and then
    Python installs no Ctrl-C handler of its own."""
    raise KeyboardInterrupt


@app.command("test")
def test(names: list[str] = typer.Argument(None, help="Lab names (templates in --dir)."),
         all_labs: bool = typer.Option(False, "--all", help="Every template in --dir."),
         directory: Path | None = DIR,
         jobs: int = typer.Option(2, "--jobs", "-j", min=1, max=8,
                                  help="Labs launched at the same time.")) -> None:
    """Prove each lab: untouched 0, reference 1.0, partials, gaming attempts, distinct
    values; exit 1 if any step fails (each step's labs are destroyed, also on Ctrl-C)."""
    from rich.console import Console

    from forge.authoring.harness import LabTestFailure
    from forge.authoring.suite import LabTestInputError, prove_named, select_labs, table
    settings = settings_or_exit(secrets=False)
    root = directory or settings.templates_dir
    console = Console()
    try:
        labs, invalid = select_labs(root, list(names or []), all_labs)
    except (LabTestInputError, TemplateError) as exc:  # no such directory, or no such lab
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for problem in invalid.values():  # every problem of each, one a line
        typer.echo(f"error: {problem}", err=True)
    if invalid and not labs:  # nothing left to test: an input error, as an unknown name is
        raise typer.Exit(2)
    runtime = runtime_or_exit(settings)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed: list[str] = list(invalid)
    total = time.monotonic()
    try:
        for name in labs:
            start = time.monotonic()
            try:
                results = prove_named(runtime, root, name, jobs)
            except ForgeError as exc:
                typer.echo(f"error: {exc.message}", err=True)
                failed.append(name)
                continue
            except LabTestFailure as exc:
                typer.echo(f"error: {name}: {exc}", err=True)
                failed.append(name)
                continue
            took = time.monotonic() - start
            console.print(table(name, results, took))
            if not all(r.ok for r in results):
                failed.append(name)
    except KeyboardInterrupt:
        typer.echo("interrupted: the labs started were destroyed", err=True)
        raise typer.Exit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        runtime.close()
    tested = len(labs) + len(invalid)
    summary = f"{tested - len(failed)}/{tested} labs passed in " \
              f"{time.monotonic() - total:.1f} s"
    if failed:
        typer.echo(f"{summary}; failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    typer.echo(summary)
    sys.stdout.flush()
