"""Attack: as another local user, read the secrets of `forge up --env-file forge.env`, or
choose the values the platform starts with by planting or editing that file.

Before: `forge up` read any env file: one of mode 0644 (`forge secrets generate >
forge.env` under umask 022) gave every local user OPERATOR_TOKEN, the HMAC secrets and the
NATS passwords; one another user owned (planted at a /tmp path first) or could write let
that user choose them, or point FORGE_SIGNING_KEY_DIR or FORGE_DB_URL at their own. The
storage root's dev secrets were already refused in either case; the env file was not. Now
each is refused with exit 1 and one line naming the file, its owner and mode and the fix,
before anything is created; no value of the file is shown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from forge.stack import envfile
from forge.stack.envfile import EnvFileError, read_env_file

from ..live_server import distinct_ports
from ..support.prefixes import runtime_prefix
from .test_bounded_files import FORGE, run

NOBODY = 65534
SECRET = "s" * 48


def _env_file(tmp_path: Path, mode: int, text: str = f"OPERATOR_TOKEN={SECRET}\n") -> Path:
    path = tmp_path / "forge.env"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _refused(path: Path) -> str:
    with pytest.raises(EnvFileError) as refused:
        read_env_file(path)
    assert SECRET not in str(refused.value)
    return str(refused.value)


def test_a_secret_env_file_other_users_can_read_is_refused(tmp_path: Path) -> None:
    path = _env_file(tmp_path, 0o644)
    assert _refused(path) == (f"{path}: sets OPERATOR_TOKEN but is readable by other users "
                              f"(owner uid {os.geteuid()}, mode 644); run `chmod 600 {path}`")
    os.chmod(path, 0o600)
    assert read_env_file(path) == {"OPERATOR_TOKEN": SECRET}


def test_an_env_file_without_secrets_may_be_read_by_others(tmp_path: Path) -> None:
    path = _env_file(tmp_path, 0o644, "FORGE_ENV=dev\nOPERATOR_TOKEN=\n")
    assert read_env_file(path) == {"FORGE_ENV": "dev", "OPERATOR_TOKEN": ""}


def test_an_env_file_others_can_write_is_refused(tmp_path: Path) -> None:
    path = _env_file(tmp_path, 0o646, "FORGE_ENV=dev\n")
    assert "writable by other users" in _refused(path)


@pytest.mark.root
@pytest.mark.no_store  # refused before settings are read: no store is opened
def test_up_refuses_an_env_file_another_user_planted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGE_RUNTIME_PREFIX", runtime_prefix("e"))
    monkeypatch.delenv("STORAGE_ROOT", raising=False)
    path = _env_file(tmp_path, 0o600, f"FORGE_SIGNING_KEY_DIR={tmp_path / 'theirs'}\n")
    os.chown(path, NOBODY, NOBODY)
    root = tmp_path / "root"
    ports = dict(zip(("--spawn-port", "--orchestrator-port", "--scoreboard-port", "--nats-port"),
                     map(str, distinct_ports(4)), strict=True))
    result = run([*FORGE, "up", "--storage", str(root), "--env-file", str(path),
                  *(arg for pair in ports.items() for arg in pair)])
    assert result.returncode == 1, result.stderr[-2000:]
    me = os.geteuid()
    assert result.stderr.splitlines() == [
        f"--env-file: {path}: owned by uid {NOBODY} (mode 600), not by uid {me}: that user "
        f"could have chosen its values; if it is yours, run `chown {me}:{os.getegid()} "
        f"{path} && chmod 600 {path}`"]
    assert not root.exists()


@pytest.mark.root
def test_a_root_file_of_the_callers_own_group_is_read(tmp_path: Path) -> None:
    # A `forge up` run as a user of its own (here nobody:nogroup) reading an env file that
    # root made for it: root:nogroup 0640. Its group is the caller's own, as for a file of
    # the caller's own: it was refused ("readable by other users; run `chmod 600`"), a fix
    # that would leave the caller unable to read it at all.
    folder = Path(tempfile.mkdtemp(prefix="fgdm-envfile-"))
    try:
        os.chmod(folder, 0o711)  # noqa: S103 - the caller may reach the file, not list the folder
        path = _env_file(folder, 0o640)
        os.chown(path, 0, NOBODY)
        os.setegid(NOBODY)
        os.seteuid(NOBODY)
        try:
            values = read_env_file(path)
        finally:
            os.seteuid(0)
            os.setegid(0)
        assert values == {"OPERATOR_TOKEN": SECRET}
        os.chmod(path, 0o644)  # others (not its group) may read it: still refused
        os.setegid(NOBODY)
        os.seteuid(NOBODY)
        try:
            with pytest.raises(EnvFileError, match="readable by other users"):
                read_env_file(path)
        finally:
            os.seteuid(0)
            os.setegid(0)
    finally:
        shutil.rmtree(folder)


@pytest.mark.root
def test_a_link_flipped_to_another_users_file_during_the_read_gives_nothing_of_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The attacker plants `forge.env` in a sticky /tmp as a symlink of their own and flips
    # it between a root file with harmless values and a file of theirs. The owner and mode
    # were checked by stat() of the path before and after the read: a flip to their file
    # for the read alone (back before the second stat) passed both, and their values (a
    # signing key directory, a database of theirs) were used. The flip happens here at
    # that very moment, as a racing attacker's would.
    harmless = tmp_path / "harmless.env"
    harmless.write_text("FORGE_ENV=dev\n")
    theirs = tmp_path / "theirs.env"
    theirs.write_text(f"FORGE_SIGNING_KEY_DIR={tmp_path / 'their-keys'}\n")
    os.chown(theirs, NOBODY, NOBODY)
    link = tmp_path / "forge.env"

    def point_at(target: Path) -> None:
        spare = tmp_path / "forge.env.new"
        os.symlink(target, spare)
        os.lchown(spare, NOBODY, NOBODY)
        os.rename(spare, link)

    point_at(harmless)
    real = envfile.read_bounded_text

    def flipped_for_the_read(*args: Any, **kwargs: Any) -> str:
        point_at(theirs)
        try:
            return real(*args, **kwargs)
        finally:
            point_at(harmless)

    monkeypatch.setattr(envfile, "read_bounded_text", flipped_for_the_read)
    try:
        values = read_env_file(link)
    except EnvFileError as refused:
        assert f"owned by uid {NOBODY}" in str(refused)
    else:
        assert values == {"FORGE_ENV": "dev"}


@pytest.mark.root
def test_an_env_file_in_a_folder_another_user_owns_is_refused(tmp_path: Path) -> None:
    # Root's own file, 0600, but in a folder of nobody's (or reached through a link of
    # root's that goes through it): nobody may rename it away and put a link to any
    # root-owned file in its place, whose values `forge up` then started with.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    path = _env_file(theirs, 0o600, "FORGE_ENV=dev\n")
    link = tmp_path / "forge.env"
    link.symlink_to(path)
    os.chown(theirs, NOBODY, NOBODY)
    for named in (path, link):
        assert _refused(named) == (
            f"{named}: is looked up in the folder {theirs}, which uid {NOBODY} owns (mode "
            f"755): another user may put another file in its place; keep it in a folder "
            f"only uid {os.geteuid()} (or root) may write")
    os.chown(theirs, 0, 0)  # the operator's folder again: read
    assert read_env_file(link) == {"FORGE_ENV": "dev"}
