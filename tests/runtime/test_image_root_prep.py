"""Image roots as the runtime prepares them: per-lab SSH host keys land inside the image's
own /etc/ssh even when the image links it elsewhere, and its /run dirs are recreated.
(root: keys are chowned to the lab user)."""

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


def test_image_run_dirs_are_recreated_three_levels_deep_never_through_links(
        tmp_path: Path) -> None:
    from forge.runtime.local.rootfs import run_dir_args

    for d in ("run/a/b/c/d/e", "run/lock", "usr/sbin"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "run" / "lock").chmod(0o1777)
    (tmp_path / "usr" / "sbin" / "sshd").write_bytes(b"")
    (tmp_path / "run" / "machine").symlink_to("/")
    args = run_dir_args(str(tmp_path))
    dirs = [args[i + 3] for i in range(0, len(args), 4)]
    assert dirs == ["/run/a", "/run/a/b", "/run/a/b/c", "/run/lock", "/run/sshd"]
    assert args[args.index("/run/lock") - 2] == "1777"
