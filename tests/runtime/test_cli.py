"""`forge runtime check|list|destroy|cleanup` against real labs of the configured engine
(root)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli.runtime import app
from forge.content import content_path
from forge.runtime.local import LocalRuntime, macvlan_probe
from forge.runtime.local.netns import create_netns, list_netns, remove_netns
from forge.stack.lock import LOCK_NAME, StorageLock, StorageLocked
from forge.templates import TemplateRegistry
from tests.runtime.helpers import leftovers, simple_lab

from ..support.configured_runtime import runtime_env
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


def test_operator_lists_and_destroys_orphaned_labs(tmp_path: Path) -> None:
    prefix, state = runtime_prefix("c"), str(tmp_path / "runtime")
    rt = LocalRuntime(state, prefix=prefix)
    rt.create(simple_lab("orphan-a"))
    rt.create(simple_lab("orphan-b"))
    rt.close()
    runner, env = CliRunner(), runtime_env(tmp_path, prefix)

    checked = runner.invoke(app, ["check"], env=env)
    assert checked.exit_code == 0 and "local runtime OK" in checked.output
    listed = runner.invoke(app, ["list"], env=env)
    assert listed.exit_code == 0
    assert "orphan-a  running  box=10.200.0.1" in listed.output
    assert "orphan-b  running" in listed.output

    assert runner.invoke(app, ["destroy"], env=env).exit_code == 2
    one = runner.invoke(app, ["destroy", "orphan-a"], env=env)
    assert one.exit_code == 0 and "destroyed orphan-a" in one.output
    bad = runner.invoke(app, ["destroy", "../etc"], env=env)
    assert bad.exit_code == 1 and "lab_id" in bad.output
    rest = runner.invoke(app, ["destroy", "--all"], env=env)
    assert rest.exit_code == 0 and "destroyed orphan-b" in rest.output
    assert leftovers(prefix, state) == []


def test_cleanup_removes_a_half_dead_lab_and_keeps_the_healthy_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix, state = runtime_prefix("o"), str(tmp_path / "runtime")
    rt = LocalRuntime(state, prefix=prefix)
    rt.create(simple_lab("healthy"))
    rt.create(simple_lab("halfdead"))
    init_pid = Path(rt.names.host_dir("halfdead", "box"), "init.pid").read_text()
    os.kill(int(init_pid), signal.SIGKILL)  # what a crash mid-teardown leaves: no live init
    for _ in range(600):  # the kill is sent; wait until the init has really left (loaded box)
        if not os.path.exists(f"/proc/{int(init_pid)}/ns/net"):
            break
        time.sleep(0.05)
    runner, env = CliRunner(), runtime_env(tmp_path, prefix)
    try:
        assert "halfdead  degraded" in runner.invoke(app, ["list"], env=env).output
        # Beside a running `forge up` on this storage root it refuses (a lab being built
        # or just claimed from a pool looks half-built too) and destroys nothing.
        up = StorageLock.acquire(tmp_path)
        try:
            refused = runner.invoke(app, ["cleanup"], env=env)
        finally:
            up.release()
        assert refused.exit_code == 1 and "another forge up" in refused.output
        assert "halfdead" in {i.lab_id for i in rt.list()}
        # A lock file it cannot open is no proof that forge up is stopped: refused too.
        lock_file = tmp_path / LOCK_NAME
        lock_file.unlink()
        lock_file.mkdir()
        unreadable = runner.invoke(app, ["cleanup"], env=env)
        lock_file.rmdir()
        assert unreadable.exit_code == 1 and "cannot lock" in unreadable.output
        assert "halfdead" in {i.lab_id for i in rt.list()}
        # The cleanup holds the lock while it works: a forge up started meanwhile refuses.
        clean = LocalRuntime.cleanup_orphans
        up_refused: list[str] = []

        def cleanup_beside_an_up_starting(self: LocalRuntime) -> list[str]:
            try:
                StorageLock.acquire(tmp_path).release()
                up_refused.append("")
            except StorageLocked as refusal:  # it names the cleanup, not another forge up
                up_refused.append(str(refusal))
            return clean(self)

        monkeypatch.setattr(LocalRuntime, "cleanup_orphans", cleanup_beside_an_up_starting)
        cleaned = runner.invoke(app, ["cleanup"], env=env)
        assert cleaned.exit_code == 0, cleaned.output
        assert up_refused == [f"forge runtime cleanup (pid {os.getpid()}) holds {tmp_path}"]
        assert "destroyed halfdead" in cleaned.output and "healthy" not in cleaned.output
        assert [i.lab_id for i in rt.list()] == ["healthy"]
    finally:
        rt.destroy("healthy")
        rt.destroy("halfdead")
        rt.close()
    assert leftovers(prefix, state) == []


def test_an_unknown_engine_is_a_config_error_naming_the_variable_and_choices(
        tmp_path: Path) -> None:
    env = {**runtime_env(tmp_path, "fg"), "FORGE_RUNTIME_ENGINE": "kubernetes"}
    result = CliRunner().invoke(app, ["list"], env=env)
    assert result.exit_code == 1
    assert "FORGE_RUNTIME_ENGINE must be one of: local" in result.output


def test_check_names_a_kernel_without_macvlan_and_the_labs_that_need_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel without macvlan sealed nft-firewall's labs with `ip -batch … failed` while
    `forge runtime check` said OK. The probe asks for a link kind this kernel has no
    module for, as `type macvlan` fails where macvlan is missing."""
    prefix, other = runtime_prefix("v"), runtime_prefix("w")
    monkeypatch.setattr(macvlan_probe, "PROBE", [
        macvlan_probe.PROBE[0], "link add link fgprobe0 name fgprobe2 type fgnosuchkind"])
    # A check killed mid-probe (SIGKILL) left its namespace: the next check of this prefix
    # removes it, but neither another prefix's (another installation's) nor a live check's.
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = f"{prefix}-macvlan-probe-{gone.pid}-abc123"
    kept = [f"{other}-macvlan-probe-{gone.pid}-abc123", f"{prefix}-macvlan-probe-1-abc123"]
    for name in (stale, *kept):
        create_netns(name)
    try:
        checked = CliRunner().invoke(app, ["check"], env=runtime_env(tmp_path, prefix))
        left = list_netns()
    finally:
        for name in kept:
            remove_netns(name)
        remove_netns(stale)
    assert checked.exit_code == 1, checked.output
    assert "problem: this kernel cannot make macvlan interfaces" in checked.output
    assert "nft-firewall" in checked.output and "modprobe macvlan" in checked.output
    assert [n for n in left if n.startswith(prefix)] == [kept[1]]
    assert kept[0] in left
    # The labs it names are the shipped ones that need it.
    registry = TemplateRegistry.load(content_path("templates"))
    assert sorted(name for name in registry.names()
                  if any(h.grading_identities for h in
                         registry.get(name).template.spec.assets.containers)
                  ) == sorted(macvlan_probe.NEEDED_BY)
