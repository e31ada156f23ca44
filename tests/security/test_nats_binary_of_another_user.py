"""The nats-server Forge runs (as root, for `forge up`): one another local user owns or may
write, or reached through a folder of theirs.

Before, `NATS_SERVER_BIN` (or a `nats-server` first on `PATH`) naming a file user `nobody`
owned, or could write, or kept in a folder of theirs, was run as it was: their program ran
as root. It is now refused with one line naming the setting, the path, its owner and mode.
The wheel's own binary, inside the running Python environment's prefix, is as trusted as
the Python code beside it and keeps working, also in a checkout its developer owns.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from forge.bus.errors import NatsServerNotFound
from forge.bus.nats_binary import find_nats_server

pytestmark = pytest.mark.root

NOBODY = 65534


def _program(folder: Path, mode: int = 0o755) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "nats-server"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def _refused(monkeypatch: pytest.MonkeyPatch, path: Path) -> str:
    monkeypatch.setenv("NATS_SERVER_BIN", str(path))
    with pytest.raises(NatsServerNotFound) as refused:
        find_nats_server()
    return str(refused.value)


def test_a_nats_server_another_user_could_have_chosen_is_not_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = _program(tmp_path / "theirs")
    os.chown(theirs, NOBODY, NOBODY)
    fix = f"if it is yours, run `chown 0:0 {theirs} && chmod go-w {theirs}`"
    assert _refused(monkeypatch, theirs) == (
        f"NATS_SERVER_BIN={str(theirs)!r}: not run, since {theirs} is owned by uid {NOBODY} "
        f"(mode 755), not by uid 0: that user could have chosen its content; {fix}")

    os.chown(theirs, 0, 0)  # root's, but any user may write it
    theirs.chmod(0o757)
    assert f"{theirs} is writable by other users (owner uid 0, mode 757)" in \
        _refused(monkeypatch, theirs)

    theirs.chmod(0o755)  # root's, 0755, but in a folder of nobody's: they may swap it
    os.chown(theirs.parent, NOBODY, NOBODY)
    assert f"{theirs.parent} is owned by uid {NOBODY} (mode 755)" in \
        _refused(monkeypatch, theirs)

    os.chown(theirs.parent, 0, 0)  # the operator's own: run, by its real path
    link = tmp_path / "nats-link"
    link.symlink_to(theirs)
    monkeypatch.setenv("NATS_SERVER_BIN", str(link))
    assert find_nats_server() == theirs

    # A nats-server of nobody's first on PATH, when nothing is next to Python: refused too.
    monkeypatch.delenv("NATS_SERVER_BIN")
    os.chown(theirs, NOBODY, NOBODY)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(theirs.parent))
    with pytest.raises(NatsServerNotFound, match=f"nats-server found on PATH: not run, "
                                                 f"since {theirs} is owned by uid {NOBODY}"):
        find_nats_server()


def test_the_wheels_nats_server_in_the_running_environment_is_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A checkout its developer owns, run by root (`sudo make demo`): its .venv's binary is
    # theirs, as is the Python code root runs from it; it is run as that code is.
    venv = tmp_path / "checkout" / ".venv"
    venv.mkdir(parents=True)
    binary = _program(venv / "bin")
    for path in (venv.parent, venv, binary.parent, binary):
        os.chown(path, NOBODY, NOBODY)
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setattr(sys, "executable", str(binary.parent / "python"))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_nats_server() == binary
    monkeypatch.setenv("NATS_SERVER_BIN", str(binary))
    assert find_nats_server() == binary


def test_the_system_pythons_prefix_is_no_reason_to_trust(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the system Python (no virtual environment) the prefix is /usr, which holds
    /usr/local (group-writable on some machines): a program there is judged like any
    other, not trusted as the wheel's own."""
    prefix = tmp_path / "usr"
    prefix.mkdir()
    program = _program(prefix / "bin")
    os.chown(program, NOBODY, NOBODY)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sys, "base_prefix", str(prefix))
    assert f"is owned by uid {NOBODY}" in _refused(monkeypatch, program)
