"""`forge image …`: build, list and prune the lab images of this machine.

Definitions come from FORGE_IMAGE_DIR (the shipped ``forge.content/images`` by default);
built images live in the machine-wide cache FORGE_IMAGE_CACHE
(``/var/cache/forge/images``). See docs/images.md.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import typer

from forge.cli.context import settings_or_exit
from forge.errors import ForgeError

app = typer.Typer(help="Lab images: root filesystems built from Debian packages.",
                  no_args_is_help=True)


def _size(n: int) -> str:
    """Bytes as a short human figure (MiB with one decimal)."""
    return f"{n / (1 << 20):.1f} MiB"


@app.command("build")
def build(names: list[str] = typer.Argument(None, help="Image names (files in FORGE_IMAGE_DIR)."),
          templates: bool = typer.Option(False, "--templates",
                                         help="Also build every image the templates name."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display.")) -> None:
    """Build each image with mmdebstrap (cached: a built image is reused). Exit 1 on a
    failure, with mmdebstrap's reason; nothing of a failed build stays in the cache."""
    from forge.images.needed import template_images

    names = list(names or [])
    if templates:
        needed = template_images(settings_or_exit().templates_dir)
        names += [n for n in needed if n not in names]
        if not names:
            typer.echo("no image to build: the templates name none")
            return
    if not names:
        typer.echo("error: name an image, or use --templates", err=True)
        raise typer.Exit(2)
    from rich.console import Console
    from rich.progress import (
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    from forge.images import ImageCache, load_definitions
    from forge.images.build import build_image

    settings = settings_or_exit()
    console = Console(stderr=True)
    try:
        definitions = load_definitions(settings.images_dir)
        unknown = [n for n in names if n not in definitions]
        if unknown:
            raise ForgeError("unknown_image", 404, f"no image definition named "
                             f"{', '.join(unknown)} in {settings.images_dir} (known: "
                             f"{', '.join(sorted(definitions)) or 'none'})")
        cache = ImageCache(settings.image_cache)
        for name in names:
            start = time.monotonic()
            with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[image]}"),
                          TextColumn("{task.description}"), TimeElapsedColumn(),
                          console=console, transient=True, disable=quiet) as progress:
                task = progress.add_task("waiting for the build lock", image=name)

                def show(line: str, task: TaskID = task, progress: Progress = progress) -> None:
                    if line.startswith(("I: ", "E: ", "W: ")):
                        progress.update(task, description=line[3:][:70])

                result = build_image(definitions[name], cache, on_line=show)
            took = time.monotonic() - start
            state = "built" if result.built else "already built"
            typer.echo(f"{name}: {state} in {took:.1f} s ({result.entry.key[:12]}, "
                       f"{_size(result.entry.size_bytes)}) at {result.entry.rootfs}")
    except ForgeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@app.command("list")
def list_images() -> None:
    """Every defined image: key prefix, built or not, size and build time."""
    from forge.images import ImageCache, image_key, load_definitions

    settings = settings_or_exit()
    try:
        definitions = load_definitions(settings.images_dir)
    except ForgeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    cache = ImageCache(settings.image_cache)
    typer.echo(f"{'NAME':<16} {'KEY':<12} {'BUILT':<5} {'SIZE':>11}  BUILT AT")
    for name, definition in sorted(definitions.items()):
        key = image_key(definition)
        entry = cache.get(key)
        if entry is None:
            typer.echo(f"{name:<16} {key[:12]:<12} {'no':<5} {'-':>11}  -")
            continue
        when = datetime.fromtimestamp(entry.built_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        typer.echo(f"{name:<16} {key[:12]:<12} {'yes':<5} {_size(entry.size_bytes):>11}  {when}")
    typer.echo(f"cache: {settings.image_cache}")


@app.command("prune")
def prune(all_: bool = typer.Option(False, "--all", help="Remove every cached image.")) -> None:
    """Remove cached images no current definition names (or all with --all), and the
    leftovers of builds that died. An image being built or used by a running lab (on this
    machine) is left alone."""
    from forge.images import ImageCache, image_key, load_definitions

    settings = settings_or_exit()
    cache = ImageCache(settings.image_cache)
    keep: set[str] = set()
    if not all_:
        try:
            keep = {image_key(d) for d in load_definitions(settings.images_dir).values()}
        except ForgeError as exc:
            typer.echo(f"error: {exc.message} (nothing pruned)", err=True)
            raise typer.Exit(1) from None
    freed = removed = 0
    for entry in cache.entries():
        if entry.key in keep:
            continue
        if cache.remove(entry.key):
            removed += 1
            freed += entry.size_bytes
            typer.echo(f"removed {entry.name} ({entry.key[:12]}, {_size(entry.size_bytes)})")
        else:
            typer.echo(f"kept {entry.name} ({entry.key[:12]}): it is being built or a "
                       "running lab uses it")
    leftovers = cache.clean_staging()
    typer.echo(f"pruned {removed} image(s), {_size(freed)}; {leftovers} build leftover(s)")
