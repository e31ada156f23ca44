"""Attack: an image links its SSH host key file to a file the lab user must not own.

At host start the platform (root) writes a fresh SSH host key into the image's /etc/ssh,
owned by the lab user so the lab's sshd can read it. The key's path used to be resolved
link by link, its own name included: an image whose ``/etc/ssh/ssh_host_ed25519_key`` is a
link to ``/etc/shadow`` (or any root file of the host) had that file overwritten with the
key and handed to the lab user. Now only the directory is resolved; the key files are made
anew (the link removed, O_CREAT|O_EXCL|O_NOFOLLOW), and the linked file is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.runtime.local.seeds import make_ssh_host_keys

pytestmark = pytest.mark.root

SHADOW = b"root:$y$j9T$not-a-real-hash:19000:0:99999:7:::\n"


def test_a_linked_host_key_file_is_replaced_never_written_through(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "sbin" / "sshd").write_bytes(b"")
    (root / "etc" / "ssh").mkdir(parents=True)
    shadow = root / "etc" / "shadow"
    shadow.write_bytes(SHADOW)
    shadow.chmod(0o640)
    os.symlink("/etc/shadow", root / "etc" / "ssh" / "ssh_host_ed25519_key")
    os.symlink("../shadow", root / "etc" / "ssh" / "ssh_host_ed25519_key.pub")

    assert make_ssh_host_keys(str(root), 4242)

    assert shadow.read_bytes() == SHADOW
    assert (shadow.stat().st_uid, shadow.stat().st_mode & 0o777) == (0, 0o640)
    key = root / "etc" / "ssh" / "ssh_host_ed25519_key"
    assert not key.is_symlink() and key.read_bytes().startswith(b"-----BEGIN OPENSSH")
    assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (4242, 0o600)
    pub = root / "etc" / "ssh" / "ssh_host_ed25519_key.pub"
    assert not pub.is_symlink() and pub.read_bytes().endswith(b" forge-lab\n")
