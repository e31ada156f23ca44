"""Per-lab SSH host keys land inside the image's own /etc/ssh, even when the image links
it elsewhere (root: keys are chowned to the lab user)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.runtime.local.seeds import make_ssh_host_keys

pytestmark = pytest.mark.root


def test_host_keys_follow_a_linked_etc_ssh_inside_the_image(tmp_path: Path) -> None:
    root, machine = tmp_path / "root", tmp_path / "machine-etc-ssh"
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "sbin" / "sshd").write_bytes(b"")
    (root / "etc" / "ssh.d").mkdir(parents=True)
    machine.mkdir()
    # Absolute inside the image: /etc/ssh.d there, the machine's path is never used.
    os.symlink("/etc/ssh.d", root / "etc" / "ssh")
    os.symlink(str(machine), root / "etc" / "ssh.d" / "elsewhere")
    assert make_ssh_host_keys(str(root), 4242)
    key = root / "etc" / "ssh.d" / "ssh_host_ed25519_key"
    assert key.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (4242, 0o600)
    assert (root / "etc" / "ssh.d" / "ssh_host_ed25519_key.pub").read_bytes().endswith(
        b" forge-lab\n")
    assert list(machine.iterdir()) == []
    # An image without sshd gets no key.
    assert not make_ssh_host_keys(str(tmp_path / "machine-etc-ssh"), 4242)
