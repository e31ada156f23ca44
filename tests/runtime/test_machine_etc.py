"""A host on the machine's userland keeps the lab's /etc when the machine replaces its own.

`useradd`, `passwd` and DHCP clients replace /etc/passwd, /etc/group, /etc/shadow, their
backups or /etc/resolv.conf by a rename. While the lab's files and masks were bound over
the machine's entries, such a rename removed the bind in every running lab: `whoami`
failed and the machine's accounts showed (seen in a parallel test run), and later the
machine's shadow and account backups through the masks that were left. These tests
replace the machine's files the same way (same bytes, same owner and mode, so nothing
else on the machine changes) while a lab runs, and they run with `make test`'s
machine-changing tests, alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.base import SpecError
from forge.runtime.local import LocalRuntime, machine_etc
from forge.runtime.local.host_dirs import write_identity
from forge.runtime.local.machine_etc import mount_etc
from tests.runtime.helpers import sh

REPLACED = ("passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "shadow", "gshadow",
            "passwd-", "group-", "shadow-", "gshadow-")
MASKED = ("shadow", "gshadow", "shadow-", "gshadow-")


@pytest.fixture
def lab(rt: LocalRuntime) -> Iterator[str]:
    lab_id = "etc-" + secrets.token_hex(3)
    rt.create(LabSpec(lab_id, [SubnetSpec("a", "10.79.1.0/24")], [
        HostSpec("h1", networks=[("a", "10.79.1.10")], image="host"),
    ]))
    yield lab_id
    rt.destroy(lab_id)


def _replace_by_rename(path: str) -> None:
    """What useradd and sed -i do: write a copy, then rename it over ``path``."""
    tmp = f"{path}.forge-test-{secrets.token_hex(3)}"
    shutil.copy2(path, tmp)
    st = os.stat(path)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.rename(tmp, path)


def _lab_view(rt: LocalRuntime, lab_id: str) -> dict[str, bytes]:
    """What the lab's /etc shows of the files the machine replaces (absent: None)."""
    return {name: rt.exec(lab_id, "h1", ["cat", f"/etc/{name}"]).stdout or None
            for name in ("passwd", "group", "hosts", "resolv.conf", *MASKED, "passwd-",
                         "group-")}


@pytest.mark.root
@pytest.mark.machine_accounts
def test_a_rename_of_the_machines_etc_files_leaves_the_labs_own(
        rt: LocalRuntime, lab: str) -> None:
    assert "\ndaemon:" in Path("/etc/passwd").read_text()  # what the search below looks for
    before = _lab_view(rt, lab)
    assert b"learner:x:" in (before["passwd"] or b"")
    assert b"Forge lab hosts" in (before["resolv.conf"] or b"")
    assert [before[name] for name in (*MASKED, "passwd-", "group-")] == [None] * 6
    assert rt.exec(lab, "h1", ["whoami"]).stdout == b"learner\n"
    for name in REPLACED:
        if os.path.exists(f"/etc/{name}") and not os.path.islink(f"/etc/{name}"):
            _replace_by_rename(f"/etc/{name}")
    assert _lab_view(rt, lab) == before
    assert rt.exec(lab, "h1", ["whoami"]).stdout == b"learner\n"
    assert before["passwd"] != Path("/etc/passwd").read_bytes()
    # No file of the host shows the machine's accounts (its `daemon` account, which the
    # lab's files do not name) or secrets, by any path (links followed; /usr, and the
    # links to it, hold base-passwd's own template of them).
    found = sh(rt, lab, "h1", "grep -Rl -s '^daemon:' / --exclude-dir=proc --exclude-dir=sys"
                              " --exclude-dir=dev --exclude-dir=usr --exclude-dir='bin'"
                              " --exclude-dir='sbin' --exclude-dir='lib*'; true")
    assert found.stdout == b"", found
    # A program reading the machine's other files through the lab's /etc still finds
    # them, the replaced one included (its directory is the machine's, live).
    assert rt.exec(lab, "h1", ["cat", "/etc/nsswitch.conf"]).stdout == \
        Path("/etc/nsswitch.conf").read_bytes()


@pytest.mark.root
def test_the_labs_etc_has_the_machines_files_but_not_its_secrets(
        rt: LocalRuntime, lab: str) -> None:
    # The machine's own links resolve as on the machine (os-release is ../usr/lib/...).
    assert rt.exec(lab, "h1", ["cat", "/etc/os-release"]).stdout == \
        Path("/etc/os-release").read_bytes()
    assert sh(rt, lab, "h1", "getent hosts localhost").exit_code == 0
    assert rt.exec(lab, "h1", ["id", "-un"]).stdout == b"learner\n"
    # The machine's accounts: the lab's own; their backups are not there.
    assert b"grader:x:" in rt.exec(lab, "h1", ["cat", "/etc/passwd"]).stdout
    for backup in ("passwd-", "group-"):
        assert rt.exec(lab, "h1", ["test", "-e", f"/etc/{backup}"]).exit_code != 0, backup
    # Secrets: empty stand-ins (they exist, as programs expect).
    for name in ("shadow", "gshadow", "shadow-", "gshadow-", "ssh", "sudoers.d", "ssl/private"):
        if not os.path.exists(f"/etc/{name}"):
            continue
        path = f"/etc/{name}"
        res = sh(rt, lab, "h1", f"if [ -d {path} ]; then ls -A {path}; else cat {path}; fi")
        assert (res.exit_code, res.stdout) == (0, b""), (path, res)
    # The machine's other directories show through whole (ssl beside its masked private).
    assert sh(rt, lab, "h1", "ls /etc/ssl").stdout.decode().split() == sorted(
        os.listdir("/etc/ssl"))
    # Nothing of it is the lab's to change, nor the machine's through it.
    for script in ("echo x > /etc/hosts", "touch /etc/new", "rm -f /etc/motd",
                   "ln -s /tmp /etc/x", "touch /etc/ssl/new", "rm -rf /etc/ssh"):
        assert sh(rt, lab, "h1", script).exit_code != 0, script
    assert not os.path.exists("/etc/new") and not os.path.exists("/etc/x")
    assert not os.path.exists("/etc/ssl/new")


@pytest.mark.root
def test_a_lab_started_on_the_machines_userland_has_its_own_etc_dir(
        rt: LocalRuntime, lab: str) -> None:
    # Its /etc is one read-only overlay (the lab's layer over the machine's /etc), never a
    # mount over one of the machine's names, and nothing else of the machine's /etc is
    # mounted anywhere in the host.
    res = rt.exec(lab, "h1", ["stat", "-c", "%F", "/etc", "/etc/passwd", "/etc/nsswitch.conf"])
    assert res.stdout.split(b"\n")[:3] == [b"directory", b"regular file", b"regular file"]
    pid = Path(rt.names.host_dir(lab, "h1"), "init.pid").read_text()
    mounts = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
    etc = [m for m in mounts if m[4] == "/etc"]
    assert len(etc) == 1 and etc[0][etc[0].index("-") + 1] == "overlay", etc
    assert "ro" in etc[0][5].split(",")
    assert not [m[4] for m in mounts if m[4].startswith("/etc/") or m[3].startswith("/etc")]


@pytest.mark.root
def test_a_lab_without_its_etc_dir_gets_one_at_its_next_sandbox(
        rt: LocalRuntime, lab: str) -> None:
    """A lab started by an older release has no /etc overlay: its next check or sandbox
    mounts it."""
    etc_dir = Path(rt.names.etc_dir(lab))
    view = etc_dir / "merged"
    assert os.path.ismount(view)
    subprocess.run(["umount", "-l", str(view)], check=True, timeout=30)
    shutil.rmtree(etc_dir / "layer")
    view.rmdir()
    # The previous release's /etc: a directory of links into /.machine-etc.
    (etc_dir / "view").mkdir()
    (etc_dir / "view" / "os-release").symlink_to("/.machine-etc/os-release")
    res = rt.run_check(lab, "h1", ["sh", "-c", "cat /etc/passwd; head -1 /etc/os-release"])
    assert res.exit_code == 0 and b"grader:x:" in res.stdout, res
    assert b"PRETTY_NAME" in res.stdout or b"NAME" in res.stdout, res
    assert os.path.ismount(view)
    assert not [p for p in etc_dir.iterdir() if p.name.startswith(".")]  # nothing half-made


@pytest.mark.root
def test_a_host_on_the_machines_userland_may_not_read_root_only_files(
        rt: LocalRuntime) -> None:
    spec = LabSpec("etc-" + secrets.token_hex(3), [SubnetSpec("a", "10.79.2.0/24")], [
        HostSpec("h1", networks=[("a", "10.79.2.10")], image="host",
                 capabilities=["DAC_READ_SEARCH"])])
    with pytest.raises(SpecError) as err:
        rt.create(spec)
    assert err.value.field == "hosts[0].capabilities"
    assert "give the host an image" in str(err.value)
    assert spec.lab_id not in [info.lab_id for info in rt.list()]


@pytest.mark.root
def test_what_is_mounted_inside_the_machines_etc_is_hidden_and_parents_keep_their_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An overlay does not see mounts in its lower layer: a file the machine covers with a
    mount would show its covered content. Such a name is hidden instead. A directory the
    lab's layer has above a masked one keeps the machine's mode (a merged directory shows
    the top layer's)."""
    machine = tmp_path / "machine-etc"
    (machine / "ssl" / "private").mkdir(parents=True)
    (machine / "ssl" / "private" / "key.pem").write_text("PRIVATE")
    (machine / "ssl" / "other.pem").write_text("other")
    machine.joinpath("ssl").chmod(0o700)
    (machine / "covered").write_text("COVERED")
    (machine / "plain").write_text("plain")
    cover = tmp_path / "cover"
    cover.write_text("MOUNTED")
    etc_dir = tmp_path / "lab-etc"
    write_identity(str(etc_dir), 65530, 65531)
    monkeypatch.setattr(machine_etc, "_mounts_seen", None)
    subprocess.run(["mount", "--bind", str(cover), str(machine / "covered")], check=True,
                   timeout=30)
    view = ""
    try:
        view = mount_etc(str(etc_dir), str(machine))
        assert sorted(os.listdir(view)) == sorted([
            "passwd", "group", "hosts", "resolv.conf", "shadow", "gshadow", "shadow-",
            "gshadow-", "ssl", "plain", "ssh", "sudoers.d"])
        assert not os.path.lexists(os.path.join(view, "covered"))
        assert os.listdir(os.path.join(view, "ssl", "private")) == []
        assert Path(view, "ssl", "other.pem").read_text() == "other"
        assert os.stat(os.path.join(view, "ssl")).st_mode & 0o777 == 0o700
    finally:
        if view and os.path.ismount(view):
            subprocess.run(["umount", "-l", view], check=True, timeout=30)
        subprocess.run(["umount", "-l", str(machine / "covered")], check=True, timeout=30)
