"""Attack: as another local user, read the learner API key an operator saved with
`forge apikey create --tenant T --subject S > alice.key`, or the receipt of `forge receipt
mint ... > receipt.txt`, and use it on the API (it signs in as that learner: their labs,
verdicts, credentials, and the plan a receipt carries).

Before: the shell made the file under the umask (0644 under the usual 022), so any local
user read the key; a file another user planted at that path (a 0666 /tmp/alice.key) got
it too. `forge secrets generate > forge.env` was already made owner-only; these two
bearer credentials were not. Now the file is made owner-only before anything is written,
and another user's file gets nothing: exit 2, one line naming its owner, and no key is
issued (nothing is left to revoke).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

FORGE = [sys.executable, "-m", "forge"]
NOBODY = 65534
COMMANDS = {
    "apikey": ["apikey", "create", "--tenant", "acme", "--subject", "alice"],
    "receipt": ["receipt", "mint", "--tenant", "acme", "--plan", "PRO", "--subject", "alice"],
}

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORGE_", "SAT_", "ET_", "RECEIPT_", "OPERATOR_", "NATS_"))}
    return {**env, "STORAGE_ROOT": str(tmp_path / "storage")}


def _into(path: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with open(path, "a", encoding="utf-8") as out:  # what `>` and `>>` hand the command
        return subprocess.run([*FORGE, *args], stdout=out, stderr=subprocess.PIPE, env=env,
                              text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_credential_written_to_a_file_is_readable_by_its_owner_only(
        tmp_path: Path, command: str) -> None:
    out = tmp_path / f"{command}.txt"
    out.touch()
    os.chmod(out, 0o644)  # what the shell makes under umask 022
    result = _into(out, COMMANDS[command], _env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text(encoding="utf-8")
    assert ("fgk_" in text) if command == "apikey" else text.startswith("ey")


@pytest.mark.root
def test_another_users_file_gets_no_key_and_none_is_issued(tmp_path: Path) -> None:
    env = _env(tmp_path)
    planted = tmp_path / "alice.key"
    planted.touch()
    os.chmod(planted, 0o666)  # noqa: S103 - the situation under test
    os.chown(planted, NOBODY, NOBODY)
    result = _into(planted, COMMANDS["apikey"], env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: stdout is a file of uid {NOBODY} (mode 666), not of uid 0: that user could "
        "read the API key; nothing was written.")
    assert planted.read_text(encoding="utf-8") == ""
    listed = subprocess.run([*FORGE, "apikey", "list", "--json"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "alice" not in listed.stdout  # no key was issued for the refused write


@pytest.mark.root
def test_another_users_file_gets_no_receipt(tmp_path: Path) -> None:
    planted = tmp_path / "receipt.txt"
    planted.touch()
    os.chmod(planted, 0o666)  # noqa: S103 - the situation under test
    os.chown(planted, NOBODY, NOBODY)
    result = _into(planted, COMMANDS["receipt"], _env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "that user could read the receipt; nothing was written" in result.stderr
    assert planted.read_text(encoding="utf-8") == ""
