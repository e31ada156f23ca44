"""Attack: a local user of the server takes the platform's lock files and keeps them.

A flock needs only a descriptor, a read-only one will do, and the lock files were 0644
under a storage root any user can traverse. Probe BI, as an unprivileged account: holding
the global audit log's lock stopped every verdict (the scoreboard still said ready); a new
scenario's audit lock kept that learner's lab launching until let go; forge-up.lock made
the platform refuse to start again; the migration lock failed an upgrade. Now every lock
file is 0600, and one left 0644 by an older release is made 0600 when it is next used.
A real account (useradd) tries each lock of a storage root the real code paths made.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.audit.log import AuditLog
from forge.config.secrets import load_dev_secrets
from forge.retention.holds import HoldStore
from forge.signing.keystore import SigningKeyring
from forge.stack.lock import StorageLock
from forge.store.migrate import upgrade

from ..support.traversable import traversable_folder

# It adds machine accounts: alone, after the parallel run (Makefile, pytest target).
pytestmark = pytest.mark.machine_accounts

# Run as the local user: open each lock read-only and try to take it without waiting.
TAKE = """
import fcntl, os, sys
for path in sys.argv[1:]:
    try:
        fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("TAKEN", path)
    except OSError as exc:
        print("REFUSED", path, exc.errno)
"""


@pytest.fixture
def local_user() -> Iterator[int]:
    """A real unprivileged account of the machine."""
    name = "fglock" + secrets.token_hex(3)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                    "/usr/sbin/nologin", name], check=True, capture_output=True, timeout=30)
    try:
        yield int(subprocess.run(["id", "-u", name], check=True, capture_output=True,
                                 text=True, timeout=30).stdout)
    finally:
        subprocess.run(["userdel", name], check=True, capture_output=True, timeout=30)


def try_as(uid: int, paths: list[Path]) -> list[str]:
    out = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                          sys.executable, "-I", "-c", TAKE, *map(str, paths)],
                         check=True, capture_output=True, text=True, timeout=60)
    return out.stdout.split("\n")[:-1]


@pytest.fixture
def storage_root() -> Iterator[Path]:
    """A storage root others may traverse, as an operator's usually is (pytest's own
    temporary directories are not)."""
    with traversable_folder("fglock-") as top:
        root = top / "storage"
        root.mkdir(mode=0o755)
        yield root


@pytest.mark.usefixtures("sqlite_only_store")  # the migration lock is SQLite's own
def test_no_lock_of_the_storage_root_can_be_taken_by_another_user(
        storage_root: Path, local_user: int) -> None:
    root = storage_root
    sid = "scn-0123456789abcdef"
    # Left by an older release: a 0644 lock of a scenario's audit log, and forge-up.lock.
    (root / "scenarios" / sid).mkdir(parents=True)
    old = root / "scenarios" / sid / "audit.jsonl.lock"
    old.touch(mode=0o644)
    (root / "forge-up.lock").touch(mode=0o644)
    os.chmod(root / "forge-up.lock", 0o644)

    # What the services do with a storage root, each taking its lock.
    AuditLog(root / "audit" / "global.jsonl", "global").append("probe", {})
    AuditLog(root / "scenarios" / sid / "audit.jsonl", sid).append("probe", {})
    HoldStore(root).hold(sid, "probe")
    upgrade(f"sqlite:///{root / 'forge.db'}")
    load_dev_secrets(root)
    SigningKeyring(root / "keys" / "signing").ensure()
    StorageLock.acquire(root).release()

    locks = sorted(root.rglob("*.lock"))
    names = {str(p.relative_to(root)) for p in locks}
    for made in ("audit/global.jsonl.lock", f"scenarios/{sid}/audit.jsonl.lock",
                 "forge.db.migrate.lock", "forge-up.lock", "retention/holds.json.lock"):
        assert made in names, names
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in locks), \
        {str(p): oct(p.stat().st_mode) for p in locks}
    answers = try_as(local_user, locks)
    assert len(answers) == len(locks) and all(a.startswith("REFUSED") for a in answers), answers

    # The attack itself, on the parent commit's mode: a 0644 lock is taken.
    os.chmod(old, 0o644)
    assert try_as(local_user, [old]) == [f"TAKEN {old}"]
