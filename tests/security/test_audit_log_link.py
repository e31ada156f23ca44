"""A scenario folder left open to all (0777, made by an older release under umask 0 inside
a `scenarios/` made under a normal umask): the storage-root check looks at `scenarios/`
itself, not at the folders in it, so such a root still starts. Another local user then
swaps the scenario's audit.jsonl for a link to a file of root's. Root's next audit line
followed the link: it cut the file's last line (or, with no newline in it, all of it) as
a "partial tail" and wrote the audit line there; a read of the log read that file.
The log is now never opened through a link: the append and the read are refused with an
AuditError saying so, and the file the link points at is left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.audit.log import AuditError, scenario_log
from forge.config.storage_root import check_storage_root

SID = "scn-00000000000000aa"


def test_an_audit_log_swapped_for_a_link_writes_and_reads_nothing_through_it(
        tmp_path: Path) -> None:
    root = tmp_path / "storage"
    folder = root / "scenarios" / SID
    folder.mkdir(parents=True)
    root.chmod(0o755)
    (root / "scenarios").chmod(0o755)
    folder.chmod(0o777)
    check_storage_root(root)  # the open folder inside `scenarios/` is not looked at
    log = scenario_log(root, SID)
    log.append("scenario.pending", {"reason": "test"})
    victim = tmp_path / "token"
    victim.write_bytes(b"a-secret-without-a-newline")
    log.path.unlink()
    log.path.symlink_to(victim)

    with pytest.raises(AuditError, match="is a symbolic link"):
        log.append("scenario.running", {})
    assert victim.read_bytes() == b"a-secret-without-a-newline"
    with pytest.raises(AuditError, match="is a symbolic link"):
        log.read_bytes()
    with pytest.raises(AuditError, match="is a symbolic link"):
        log.adopt(b"", "scenario.completed")
    assert victim.read_bytes() == b"a-secret-without-a-newline"
