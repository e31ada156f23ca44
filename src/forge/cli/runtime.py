"""`forge runtime …`: inspect and clean up the labs of the configured runtime engine.

Engine-neutral: the runtime comes from `make_runtime(settings)` (`FORGE_RUNTIME_ENGINE`)
and only the abstract `Runtime` API is used; what an engine does not offer (e.g. orphan
cleanup) is reported as such, with exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from forge.cli.context import runtime_or_exit, settings_or_exit
from forge.cli.output import JSON_OPTION, print_json, print_table
from forge.cli.storage import hold_root_or_exit, watch_new_root
from forge.config.settings import ConfigError, load_settings
from forge.runtime.base import NotSupported, Runtime, RuntimeFault
from forge.stack.lock import CLEANUP, COPY, StorageLocked

app = typer.Typer(help="Sandbox runtime: the labs the configured engine holds.",
                  no_args_is_help=True)

PREFIX = typer.Option(None, "--prefix",
                      help="Name prefix of the labs to manage [FORGE_RUNTIME_PREFIX].")


@contextmanager
def _runtime(prefix: str | None) -> Iterator[Runtime]:
    """The configured engine (with `--prefix` overriding FORGE_RUNTIME_PREFIX), closed after."""
    if prefix is None:
        settings = settings_or_exit()
    else:
        try:
            with watch_new_root():  # a storage root it makes is announced, as without it
                settings = load_settings({**os.environ, "FORGE_RUNTIME_PREFIX": prefix})
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    runtime = runtime_or_exit(settings)
    try:
        yield runtime
    finally:
        runtime.close()


@app.command("check")
def check(prefix: str | None = PREFIX) -> None:
    """Say whether the engine can work here (e.g. root, tools, cgroups) and run every
    lab (e.g. kernel features some labs need only at grading); exit 1 if not."""
    with _runtime(prefix) as rt:
        problems = rt.check()
        problems += rt.lab_problems()
        name = rt.engine_name
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{name} runtime OK")


@app.command("list")
def list_labs(prefix: str | None = PREFIX, as_json: bool = JSON_OPTION) -> None:
    """List the labs the engine's backend holds (state and host addresses)."""
    with _runtime(prefix) as rt:
        labs = rt.list()
    if as_json:
        print_json({"labs": [{"lab_id": i.lab_id, "state": i.state, "hosts": i.hosts}
                             for i in labs]})
        return
    print_table(("LAB_ID", "STATE", "HOSTS"), ((info.lab_id, info.state, " ".join(
        f"{host}={','.join(addrs.values()) or '-'}" for host, addrs in info.hosts.items()))
        for info in labs))


@app.command("destroy")
def destroy(
    lab_ids: list[str] = typer.Argument(None, help="Lab ids to destroy."),
    all_labs: bool = typer.Option(False, "--all", help="Destroy every lab of the prefix "
                                  "this storage root holds (not a foreign one: name it)."),
    prefix: str | None = PREFIX,
) -> None:
    """Destroy labs (every process and object the engine made for them); exit 1 on error."""
    with _runtime(prefix) as rt:
        targets = ([i.lab_id for i in rt.list() if i.state != "foreign"] if all_labs
                   else list(lab_ids or []))
        if not targets:
            typer.echo("nothing to destroy (give lab ids or --all)", err=True)
            raise typer.Exit(2)
        failed = 0
        for lab_id in targets:
            try:
                rt.destroy(lab_id)
                typer.echo(f"destroyed {lab_id}")
            except (RuntimeFault, OSError) as exc:
                failed += 1
                typer.echo(f"failed {lab_id}: {exc}", err=True)
    if failed:
        raise typer.Exit(1)


def _why_not_now(running: StorageLocked) -> str:
    """Why the cleanup waits for whoever holds the storage root: only `forge up` runs an
    orchestrator whose labs being built it would destroy."""
    if running.holder == CLEANUP:
        return "one cleanup at a time"
    if running.holder == COPY:
        return "or let it end: one command holds the storage root at a time"
    return "a running orchestrator's labs being built would be destroyed"


@app.command("cleanup")
def cleanup(prefix: str | None = PREFIX) -> None:
    """Remove labs a crash left half-built or half-destroyed (run it while the orchestrator
    is stopped: it also destroys labs being built or just claimed from a pool); exit 2 when
    the engine has no such cleanup, 1 on error or while `forge up` runs on this storage
    root."""
    root = settings_or_exit().storage_root
    # Held until the cleanup ends: a `forge up` started meanwhile refuses as well.
    lock = hold_root_or_exit(root, CLEANUP, "cleanup", _why_not_now)
    try:
        cleaned, foreign = _cleanup_orphans(prefix)
    finally:
        lock.release()
    for lab_id in cleaned:
        typer.echo(f"destroyed {lab_id}")
    typer.echo(f"{len(cleaned)} orphaned lab(s) removed")
    if foreign:
        typer.echo(
            f"left alone: {len(foreign)} lab(s) of this prefix with no state under "
            f"{root}: {', '.join(foreign[:10])}{' …' if len(foreign) > 10 else ''} "
            "(another installation's with the same FORGE_RUNTIME_PREFIX, or this command "
            "was not given the installation's STORAGE_ROOT; `forge runtime destroy ID` "
            "removes one for certain)", err=True)
        raise typer.Exit(1)


def _cleanup_orphans(prefix: str | None) -> tuple[list[str], list[str]]:
    """(labs destroyed, ``foreign`` labs left alone)."""
    with _runtime(prefix) as rt:
        try:
            cleaned = rt.cleanup_orphans()
            return cleaned, sorted(i.lab_id for i in rt.list() if i.state == "foreign")
        except NotSupported as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        except (RuntimeFault, OSError) as exc:
            typer.echo(f"cleanup failed: {exc}", err=True)
            raise typer.Exit(1) from None
