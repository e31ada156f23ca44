"""Attack: read the secrets of `forge secrets generate --nats > forge.env` (the runbook's
step) as another local user.

Before: the shell made forge.env under the umask (0644 under the usual 022), so any local
user read OPERATOR_TOKEN, the HMAC secrets and every service's NATS password from it; and
a file another user planted at that path first (a 0666 /tmp/forge.env) was written into,
its owner reading (and changing) what the platform then started with. Now the file is
made owner-only before a secret is written, and another user's file gets nothing (exit 2,
one line naming its owner).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from forge.config.secrets import NATS_PASSWORD_VARS, REQUIRED_SECRETS

FORGE = [sys.executable, "-m", "forge"]
NOBODY = 65534


def _generate_into(path: Path) -> subprocess.CompletedProcess[str]:
    with open(path, "a", encoding="utf-8") as out:  # what `>>` (and `>`) hands the command
        return subprocess.run([*FORGE, "secrets", "generate", "--nats"], stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)


def test_secrets_written_to_a_file_are_readable_by_its_owner_only(tmp_path: Path) -> None:
    env_file = tmp_path / "forge.env"
    env_file.touch()
    os.chmod(env_file, 0o644)  # what the shell makes under umask 022
    result = _generate_into(env_file)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    names = {line.split("=", 1)[0] for line in env_file.read_text().splitlines()
             if not line.startswith("#")}
    assert names == {*REQUIRED_SECRETS, *NATS_PASSWORD_VARS.values()}


def test_secrets_printed_to_a_pipe_are_printed_as_before() -> None:
    result = subprocess.run([*FORGE, "secrets", "generate"], capture_output=True, text=True,
                            timeout=60, check=True)
    assert {line.split("=", 1)[0] for line in result.stdout.splitlines()
            if not line.startswith("#")} == set(REQUIRED_SECRETS)


@pytest.mark.root
def test_a_file_another_user_planted_gets_no_secret(tmp_path: Path) -> None:
    planted = tmp_path / "forge.env"
    planted.touch()
    os.chown(planted, NOBODY, NOBODY)
    os.chmod(planted, 0o666)  # noqa: S103 - the attacker's file, open to all
    result = _generate_into(planted)
    assert result.returncode == 2
    assert planted.read_bytes() == b""
    assert result.stderr.splitlines() == [
        f"error: stdout is a file of uid {NOBODY} (mode 666), not of uid {os.geteuid()}: that "
        "user could read the secrets; nothing was written. Write them to a new file of your "
        "own"]
    assert stat.S_IMODE(planted.stat().st_mode) == 0o666  # another user's file: untouched


def test_the_nats_auth_config_written_to_a_file_is_readable_by_its_owner_only(
        tmp_path: Path) -> None:
    # `forge nats auth-config > auth.conf` (the runbook's step for your own NATS) holds
    # every service's password: made owner-only before a byte of it is written.
    conf = tmp_path / "auth.conf"
    conf.touch()
    os.chmod(conf, 0o644)
    env = {**os.environ, "STORAGE_ROOT": str(tmp_path / "storage"),
           **{var: f"{var.lower()}-" + "p" * 40 for var in NATS_PASSWORD_VARS.values()}}
    with open(conf, "w", encoding="utf-8") as out:
        result = subprocess.run([*FORGE, "nats", "auth-config"], stdout=out, env=env,
                                stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert "nats_spawn_password-" in conf.read_text()
