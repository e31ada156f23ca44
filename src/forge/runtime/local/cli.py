"""`forge runtime …`: inspect and clean up local labs (operators, after a crash)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forge.runtime.base import RuntimeFault

if TYPE_CHECKING:
    from forge.runtime.local import LocalRuntime

app = typer.Typer(help="Local sandbox runtime (labs on this machine).", no_args_is_help=True)


def _default_state_dir() -> str:
    """<STORAGE_ROOT>/runtime, the orchestrator's default."""
    return str(Path(os.environ.get("STORAGE_ROOT", "storage")).absolute() / "runtime")


STATE = typer.Option(None, "--state-dir", help="Runtime state dir [<STORAGE_ROOT>/runtime].")
PREFIX = typer.Option("fg", "--prefix", help="Name prefix of the labs to manage.")


def _runtime(state_dir: str | None, prefix: str) -> LocalRuntime:
    from forge.runtime.local import LocalRuntime  # imported lazily: keeps `forge` fast

    return LocalRuntime(state_dir or _default_state_dir(), prefix=prefix)


@app.command("check")
def check(state_dir: str | None = STATE, prefix: str = PREFIX) -> None:
    """Say whether the local runtime can work here (root, tools, cgroups); exit 1 if not."""
    problems = _runtime(state_dir, prefix).check()
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("local runtime OK")


@app.command("list")
def list_labs(state_dir: str | None = STATE, prefix: str = PREFIX) -> None:
    """List the labs the kernel holds (state and host addresses)."""
    for info in _runtime(state_dir, prefix).list():
        hosts = " ".join(
            f"{host}={','.join(addrs.values()) or '-'}" for host, addrs in info.hosts.items()
        )
        typer.echo(f"{info.lab_id}  {info.state}  {hosts}")


@app.command("destroy")
def destroy(
    lab_ids: list[str] = typer.Argument(None, help="Lab ids to destroy."),
    all_labs: bool = typer.Option(False, "--all", help="Destroy every lab of the prefix."),
    state_dir: str | None = STATE,
    prefix: str = PREFIX,
) -> None:
    """Destroy labs (every process, namespace, link, cgroup and host dir); exit 1 on error."""
    rt = _runtime(state_dir, prefix)
    targets = [i.lab_id for i in rt.list()] if all_labs else list(lab_ids or [])
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
