"""`forge keys export` into a folder other local users may write to (/tmp, mode 1777).

Before: each key was written under the fixed name `<kid>.pem.tmp` first, so another local
user who planted a link there (O_NOFOLLOW refuses it) or a file of their own (the kernel's
protected_regular refuses it) made the operator's export fail. After: the new content goes
under a random name created exclusively; what was planted is left as it was and never
written through.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.signing.keystore import SigningKeyError, SigningKeyring

pytestmark = pytest.mark.root  # a file owned by another user


def test_a_planted_tmp_name_neither_blocks_nor_receives_the_export(tmp_path: Path) -> None:
    ring = SigningKeyring(tmp_path / "keys")
    kid = ring.generate().key_id
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    target = tmp_path / "victim"
    target.write_text("keep me")
    (shared / f"{kid}.pem.tmp").symlink_to(target)
    ring.export_public(shared)
    assert target.read_text() == "keep me"
    assert (shared / f"{kid}.pem").read_bytes() == ring.export_public()
    assert (shared / f"{kid}.pem").stat().st_mode & 0o777 == 0o644

    # A regular file of another user at the name.
    (shared / f"{kid}.pem.tmp").unlink()
    (shared / f"{kid}.pem").unlink()
    planted = shared / f"{kid}.pem.tmp"
    planted.write_text("theirs")
    os.chown(planted, 65534, 65534)
    ring.export_public(shared)
    assert planted.read_text() == "theirs"
    assert (shared / f"{kid}.pem").read_bytes() == ring.export_public()
    # Nothing of the export's own is left behind.
    assert sorted(p.name for p in shared.iterdir()) == [f"{kid}.pem", f"{kid}.pem.tmp"]


def test_a_folder_another_user_owns_gets_no_keys(tmp_path: Path) -> None:
    """The owner of the --out folder could swap the exported keys for their own before a
    verifier trusts them: the export is refused, and nothing is written there."""
    ring = SigningKeyring(tmp_path / "keys")
    ring.generate()
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(SigningKeyError, match=r"--out: .*belongs to another user \(uid 65534\)"):
        ring.export_public(theirs)
    assert list(theirs.iterdir()) == []
    # A folder of one's own, or of root (like /tmp), still takes the export.
    mine = tmp_path / "mine"
    ring.export_public(mine)
    assert len(list(mine.iterdir())) == 1
