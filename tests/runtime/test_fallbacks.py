"""The runtime's fallbacks when the machine lacks a feature: cgroup v2 without
``cgroup.kill`` (kernels < 5.14), a program installed after a first failed look-up and
a root whose ``env`` has no ``--default-signal`` (older coreutils, busybox)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from forge import machine_path
from forge.runtime.local import tools
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.service_signals import PATH_DIRS, service_prefix


def _cgroup_v2_without_kill(root: Path, pid: int) -> Cgroups:
    """A cgroup v2 layout (as the engine reads it) whose lab holds ``pid`` and which has
    no ``cgroup.kill`` file: what a kernel older than 5.14 shows."""
    (root / "cgroup.controllers").write_text("memory pids cpu\n")
    leaf = root / "lab" / "box" / "init"
    leaf.mkdir(parents=True)
    (leaf / "cgroup.procs").write_text(f"{pid}\n")
    cg = Cgroups.detect(str(root))
    assert cg.version == 2
    return cg


def test_signal_all_kills_each_pid_without_cgroup_kill(tmp_path: Path) -> None:
    """Without ``cgroup.kill``, signalling a lab still kills its processes (one by one),
    so a destroy does not wait seconds per live sandbox, and nothing is written in its
    place."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        cg = _cgroup_v2_without_kill(tmp_path, proc.pid)
        cg.signal_all("lab")
        assert proc.wait(timeout=30) == -9
        assert not (tmp_path / "lab" / "cgroup.kill").exists()
    finally:
        proc.kill()
        proc.wait()


def test_tool_installed_after_a_miss_is_found(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A program missing at the first look-up is found once installed, without a
    restart; a found program's path is kept."""
    name = "forge-test-tool-" + os.urandom(3).hex()
    monkeypatch.setattr(machine_path, "MACHINE_PATH", str(tmp_path))
    assert tools.missing((name,)) == [name]
    assert tools.tool(name) == name
    program = tmp_path / name
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    assert tools.missing((name,)) == []
    assert tools.tool(name) == str(program)
    program.unlink()
    assert tools.tool(name) == str(program)


def test_service_prefix_follows_the_roots_own_env(tmp_path: Path) -> None:
    """A root whose env has ``--default-signal`` gets it (by its in-root path); a root
    whose env is busybox's (a link to a program without the option) or has no env gets
    no prefix, so its services still start (with a warning) instead of failing."""
    assert service_prefix("/") == (_machine_env(), "--default-signal")
    busybox = tmp_path / "busybox-root"
    (busybox / "bin").mkdir(parents=True)
    (busybox / "bin" / "busybox").write_bytes(b"\x7fELF busybox env -i -u -0\n")
    (busybox / "usr" / "bin").mkdir(parents=True)
    (busybox / "usr" / "bin" / "env").symlink_to("/bin/busybox")
    assert service_prefix(str(busybox)) == ()
    assert service_prefix(str(tmp_path / "empty")) == ()
    # The decision follows the file: an env upgraded in place is probed again.
    (busybox / "usr" / "bin" / "env").unlink()
    (busybox / "usr" / "bin" / "env").write_bytes(b"\x7fELF coreutils --default-signal\n")
    assert service_prefix(str(busybox)) == ("/usr/bin/env", "--default-signal")


def _machine_env() -> str:
    """The first env on the hosts' PATH of the machine's root."""
    for d in PATH_DIRS:
        if os.path.isfile(f"{d}/env"):
            return f"{d}/env"
    raise AssertionError("no env on the machine")
