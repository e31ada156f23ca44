"""`forge image …`: build, list and prune the lab images of this machine.

Definitions come from FORGE_IMAGE_DIR (the shipped ``forge.content/images`` by default);
built images live in the machine-wide cache FORGE_IMAGE_CACHE
(``/var/cache/forge/images``). See docs/images.md.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forge.cli.context import settings_or_exit
from forge.cli.output import JSON_OPTION, print_json, print_table
from forge.content import content_path
from forge.errors import ForgeError
from forge.templates.problems import TemplateError

if TYPE_CHECKING:
    from forge.config.settings import Settings
    from forge.images import ImageCache, ImageDefinition

app = typer.Typer(help="Lab images: root filesystems built from Debian packages.",
                  no_args_is_help=True)


def _size(n: int) -> str:
    """Bytes as a short human figure (MiB with one decimal)."""
    return f"{n / (1 << 20):.1f} MiB"


def _definitions(names: list[str], images_dir: Path) -> dict[str, ImageDefinition]:
    """The definitions of ``names`` (only their files are read); ForgeError naming every
    name without one."""
    from forge.images.lookup import load_named

    found = {name: load_named(name, images_dir) for name in names}
    missing = [name for name, definition in found.items() if definition is None]
    if missing:
        raise ForgeError("unknown_image", 404, f"no image definition named "
                         f"{', '.join(missing)} in {images_dir} (FORGE_IMAGE_DIR): set "
                         f"FORGE_IMAGE_DIR to the folder holding {missing[0]}.yaml")
    return {name: d for name, d in found.items() if d is not None}


def build_images(names: list[str], settings: Settings, *, quiet: bool = False,
                 first_use: bool = False) -> tuple[int, int, float]:
    """Build each image of ``names`` that is not cached, with a progress display and a
    line per image; (cached, built, seconds spent building). ForgeError on the first
    failure (nothing of it stays in the cache). ``first_use``: the wording of ``forge up``,
    which builds what the templates need before anything starts."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    from forge.images import ImageCache, image_key
    from forge.images.build import build_image

    console = Console(stderr=True)
    definitions = _definitions(names, settings.images_dir)
    cache = ImageCache(settings.image_cache)
    cached = built = 0
    spent = 0.0
    for name in names:
        was_cached = cache.get(image_key(definitions[name])) is not None
        if first_use and not was_cached:
            console.print(f"image {name}: not built yet, building (first use)…",
                          markup=False, highlight=False)
        start = time.monotonic()
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[image]}"),
                      TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True,
                      disable=quiet or not console.is_terminal) as progress:
            task = progress.add_task("waiting for the build lock", image=name)

            def show(line: str, task: TaskID = task, progress: Progress = progress) -> None:
                if line.startswith(("I: ", "E: ", "W: ")):
                    progress.update(task, description=line[3:][:70])

            result = build_image(definitions[name], cache, on_line=show)
        took = time.monotonic() - start
        entry = result.entry
        if result.built:
            built += 1
            spent += took
        else:
            cached += 1
        if first_use:
            if result.built:
                console.print(f"image {name}: built in {took:.1f} s ({_size(entry.size_bytes)})",
                              markup=False, highlight=False)
            continue
        state = "built" if result.built else "already built"
        typer.echo(f"{name}: {state} in {took:.1f} s ({entry.key[:12]}, "
                   f"{_size(entry.size_bytes)}) at {entry.rootfs}")
    return cached, built, spent


def images_summary(cached: int, built: int, spent: float) -> str:
    """One line: how many images were cached, how many built and how long that took."""
    if not cached and not built:
        return "images: none needed"
    parts = [f"{built} built in {spent:.1f} s (cached now: the next time takes no time)"
             if built else "", f"{cached} cached" if cached else ""]
    return "images: " + ", ".join(p for p in parts if p)


@app.command("build")
def build(names: list[str] = typer.Argument(None, help="Image names (files in FORGE_IMAGE_DIR)."),
          templates: bool = typer.Option(False, "--templates",
                                         help="Also build every image the templates name."),
          all_: bool = typer.Option(False, "--all",
                                    help="Build every definition of FORGE_IMAGE_DIR."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display.")) -> None:
    """Build each image with mmdebstrap (cached: a built image is reused). Exit 1 on a
    failure, with mmdebstrap's reason; nothing of a failed build stays in the cache."""
    from forge.images import load_definitions
    from forge.images.needed import template_images

    settings = settings_or_exit(secrets=False)
    names = list(names or [])
    try:
        extra: list[str] = []
        if templates:
            extra += template_images(settings.templates_dir)
        if all_:
            extra += sorted(load_definitions(settings.images_dir))
        names += [n for n in dict.fromkeys(extra) if n not in names]
        if (templates or all_) and not names:
            typer.echo("no image to build: " + ("the templates name none" if templates
                                                and not all_ else "no definition"))
            return
        if not names:
            typer.echo("error: name an image, or use --templates or --all", err=True)
            raise typer.Exit(2)
        summary = images_summary(*build_images(names, settings, quiet=quiet))
        typer.echo(summary)
    except ForgeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    except TemplateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("list")
def list_images(as_json: bool = JSON_OPTION) -> None:
    """Every defined image: key prefix, built or not, size on disk and build time; then the
    cache's total (every built entry, also those no definition names any more)."""
    from forge.images import image_key, load_definitions

    settings = settings_or_exit(secrets=False)
    try:
        definitions = load_definitions(settings.images_dir)
        shipped = _shipped_keys()
    except ForgeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    cache = _checked_cache(settings.image_cache)
    listed = [(name, image_key(d)) for name, d in sorted(definitions.items())]
    built = {key: cache.get(key) for _, key in listed}
    entries = cache.entries()
    current = {key for _, key in listed}
    stale = [e for e in entries if e.key not in current and e.key not in shipped]
    kept = sum(1 for e in entries if e.key not in current and e.key in shipped)
    total = sum(e.size_bytes for e in entries)

    def when(key: str) -> str | None:
        entry = built[key]
        return None if entry is None else datetime.fromtimestamp(
            entry.built_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    if as_json:
        print_json({"images": [
            {"name": name, "key": key, "built": built[key] is not None,
             "size_bytes": getattr(built[key], "size_bytes", None), "built_at": when(key)}
            for name, key in listed], "cache": {
            "path": str(settings.image_cache), "entries": len(entries), "size_bytes": total,
            "stale_entries": len(stale), "stale_bytes": sum(e.size_bytes for e in stale),
            "shipped_entries": kept}})
        return
    print_table(("NAME", "KEY", "BUILT", "SIZE", "BUILT AT"), ((
        name, key[:12], "no" if built[key] is None else "yes",
        "-" if (entry := built[key]) is None else _size(entry.size_bytes), when(key) or "-")
        for name, key in listed))
    note = (f" ({len(stale)} of them, {_size(sum(e.size_bytes for e in stale))}, named by no "
            "current definition: forge image prune removes them)" if stale else "")
    if kept:
        note += (f" ({kept} named only by the shipped definitions, other installations' "
                 "images: forge image prune keeps them)")
    typer.echo(f"cache: {settings.image_cache}: {len(entries)} image(s), {_size(total)} on "
               f"disk{note}")


def _shipped_keys() -> dict[str, str]:
    """Key -> name of each shipped definition (``forge.content/images``). The cache is
    machine-wide and every installation on the default FORGE_IMAGE_DIR runs on these, so
    a command given an author's folder, which replaces them, must never count them as
    removable. ForgeError when they cannot be read."""
    from forge.images import image_key, load_definitions

    return {image_key(d): name for name, d in load_definitions(content_path("images")).items()}


def _checked_cache(root: Path) -> ImageCache:
    """The cache at ``root``, or exit 1 with its one line when another user could have
    planted it (UnsafeImageCache): nothing of it is listed or removed then."""
    from forge.images import ImageCache
    from forge.images.cache import check_cache_root

    try:
        check_cache_root(root)
    except ForgeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    return ImageCache(root)


@app.command("prune")
def prune(all_: bool = typer.Option(False, "--all", help="Remove every cached image.")) -> None:
    """Remove cached images no current definition names (or all with --all), and the
    leftovers of builds that died. An image a shipped definition names (other
    installations use it), being built or used by a running lab (on this machine) is left
    alone, each with a line saying why."""
    from forge.images import image_key, load_definitions

    settings = settings_or_exit(secrets=False)
    keep: set[str] = set()
    shipped: dict[str, str] = {}
    if not all_:
        try:
            keep = {image_key(d) for d in load_definitions(settings.images_dir).values()}
            shipped = _shipped_keys()
        except ForgeError as exc:
            typer.echo(f"error: {exc.message} (nothing pruned)", err=True)
            raise typer.Exit(1) from None
    cache = _checked_cache(settings.image_cache)
    freed = removed = 0
    for entry in cache.entries():
        if entry.key in keep:
            continue
        if entry.key in shipped:
            typer.echo(f"kept {entry.name} ({entry.key[:12]}): a shipped image definition "
                       "names it, and other installations of this machine run on it "
                       "(--all removes it)")
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
