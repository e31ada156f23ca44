"""A learner on an image host attacks the shared image and looks for the machine's /etc.

The image tree in the machine-wide cache is shared by every lab that uses it: a learner
who could change one byte of it (write, chmod, a hard link from the writable area whose
later write lands in the image, the /var overlay) would reach every other learner on that
image. Before images, a host with ``image:`` silently ran on the machine's own userland
and the machine's whole /etc (bar a few masked files) was readable; an image host now
sees only the image's.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, Runtime, SubnetSpec

from ..support.configured_runtime import configured_runtime
from ..support.images import ensure_default_image
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root

ATTACKS = {
    "append to a binary": "echo pwned >> /usr/bin/ls",
    "replace a binary": "cp /bin/sh /usr/bin/ls",
    "chmod a binary": "chmod 4777 /usr/bin/ls",
    "edit os-release": "echo ID=pwned >> /etc/os-release",
    "hard link into scratch": "ln /usr/bin/ls /tmp/ls && echo pwned >> /tmp/ls",
    "hard link into var/tmp": "ln /var/lib/dpkg/status /var/tmp/st && echo x >> /var/tmp/st",
    "write through the overlay": "echo pwned >> /var/lib/dpkg/status",
    "chmod through the overlay": "chmod 666 /var/lib/dpkg/status",
    "new file in the image": "touch /usr/lib/pwned /etc/pwned /var/lib/pwned",
    "write through /proc root": "echo pwned >> /proc/1/root/usr/bin/ls",
    "remount": "mount -o remount,rw / && echo pwned >> /usr/bin/ls",
    "truncate": "truncate -s 0 /usr/bin/ls",
}


def tree_state(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """(mode, uid, nlink, size) of every entry of the image, by path."""
    state = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(base, name))
            state[os.path.join(base, name)] = (st.st_mode, st.st_uid, st.st_nlink, st.st_size)
    return state


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def image_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, Path]]:
    """One lab on base for both tests: every attack of the first fails (it asserts so),
    so the second sees the same host a fresh lab would show."""
    rootfs = Path(ensure_default_image())  # base
    with configured_runtime(tmp_path_factory.mktemp("tamper"), runtime_prefix("s")) as rt:
        rt.create(LabSpec("tamper", [SubnetSpec("a", "10.76.0.0/24")],
                          [HostSpec("box", networks=[("a", None)], image="base")]))
        yield rt, rootfs


def test_a_learner_cannot_change_the_shared_image(image_lab: tuple[Runtime, Path]) -> None:
    rt, rootfs = image_lab
    watched = [rootfs / "usr/bin/ls", rootfs / "etc/os-release", rootfs / "var/lib/dpkg/status"]
    # The attacks below run against the cached file itself (same inode), not a copy.
    res = rt.exec("tamper", "box", shell="stat -c %i /usr/bin/ls")
    assert res.stdout_text.strip() == str(os.stat(rootfs / "usr/bin/ls").st_ino)
    before_hash = {p: digest(p) for p in watched}
    before = tree_state(rootfs)
    for attack, script in ATTACKS.items():
        res = rt.exec("tamper", "box", shell=script, timeout=30)
        assert res.exit_code != 0, f"{attack} succeeded: {res.stdout_text}"
    assert {p: digest(p) for p in watched} == before_hash
    assert tree_state(rootfs) == before
    # Inside, the host's own view is unchanged as well (nothing was copied up).
    res = rt.exec("tamper", "box", shell="stat -c %s /usr/bin/ls; cat /etc/os-release")
    assert res.stdout_text.split("\n", 1)[1] == (rootfs / "etc/os-release").read_text()


def test_the_machines_etc_is_not_visible_from_an_image_host(
    image_lab: tuple[Runtime, Path],
) -> None:
    rt, rootfs = image_lab
    marker = Path("/etc") / f"forge-secret-{secrets.token_hex(6)}"
    marker.write_text("machine secret\n", encoding="utf-8")
    os.chmod(marker, 0o644)
    try:
        for script in (f"cat {marker}", f"cat /proc/1/root{marker}", "grep -r 'machine secret' "
                       "/etc /proc/1/root/etc 2>/dev/null", f"ls -a /etc | grep -x {marker.name}"):
            res = rt.exec("tamper", "box", shell=script, timeout=30)
            assert res.exit_code != 0 and "machine secret" not in res.stdout_text, script
        res = rt.exec("tamper", "box", shell="ls -A /etc")
        assert set(res.stdout_text.split()) == set(os.listdir(rootfs / "etc"))
        # Nor did the build carry the machine's own name or resolver into the image.
        for name in ("hostname", "resolv.conf"):
            mine = Path("/etc", name).read_text(encoding="utf-8")
            assert not mine.strip() or (rootfs / "etc" / name).read_text() != mine
    finally:
        marker.unlink()
