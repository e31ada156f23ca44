"""Attack: remove the installation's audit log (`audit/global.jsonl` and its signed head
`global.jsonl.head`), or run `forge audit verify` against a directory that is not the storage
root (the default is ./storage under the current directory).

Before, both printed "OK …/audit/global.jsonl: 0 entries" and exit 0, which an operator reads
as a verified log; `--scenario` already refused the same case (exit 2). Now the global log
does too: exit 2, a line naming the path and why, nothing printed as OK.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from forge.audit.log import global_log
from forge.signing.keystore import SigningKeyring


def _audit_verify(storage: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FORGE_SIGNING_KEY_DIR"}
    env["STORAGE_ROOT"] = str(storage)
    return subprocess.run([sys.executable, "-m", "forge", "audit", "verify"],
                          capture_output=True, text=True, timeout=60, env=env)


def test_a_removed_global_log_is_not_ok(tmp_path: Path) -> None:
    log = global_log(tmp_path, signer=SigningKeyring(tmp_path / "keys" / "signing").generate())
    log.append("op.event", {"n": 1})
    log.checkpoint()
    assert _audit_verify(tmp_path).stdout.startswith("OK")
    log.path.unlink()
    log.head_path.unlink()
    removed = _audit_verify(tmp_path)
    assert removed.returncode == 2 and removed.stdout == "", removed.stdout
    assert removed.stderr.startswith(f"error: no audit log at {log.path} (")


def test_a_directory_that_is_no_storage_root_is_not_ok(tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-the-root"
    result = _audit_verify(elsewhere)
    assert result.returncode == 2 and not result.stdout.startswith("OK"), result.stdout
    assert "give --storage or STORAGE_ROOT" in result.stderr
    assert not elsewhere.exists()  # nothing made
