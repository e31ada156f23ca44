"""A host on the machine's userland keeps the lab's /etc when the machine replaces its own.

`useradd`, `passwd` and DHCP clients replace /etc/passwd, /etc/group or /etc/resolv.conf by
a rename. While the lab's identity files were bound over the machine's entries, such a
rename removed the bind in every running lab: `whoami` failed and the machine's accounts
showed (seen in a parallel test run). These tests replace the machine's files the same way
(same bytes, same owner and mode, so nothing else on the machine changes) while a lab
runs, and they run with `make test`'s machine-changing tests, alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.base import SpecError
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import sh

REPLACED = ("passwd", "group", "hosts", "resolv.conf", "nsswitch.conf")


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
    return {name: rt.exec(lab_id, "h1", ["cat", f"/etc/{name}"]).stdout
            for name in ("passwd", "group", "hosts", "resolv.conf")}


@pytest.mark.root
@pytest.mark.machine_accounts
def test_a_rename_of_the_machines_etc_files_leaves_the_labs_own(
        rt: LocalRuntime, lab: str) -> None:
    before = _lab_view(rt, lab)
    assert b"learner:x:" in before["passwd"] and b"Forge lab hosts" in before["resolv.conf"]
    assert rt.exec(lab, "h1", ["whoami"]).stdout == b"learner\n"
    for name in REPLACED:
        if os.path.exists(f"/etc/{name}") and not os.path.islink(f"/etc/{name}"):
            _replace_by_rename(f"/etc/{name}")
    assert _lab_view(rt, lab) == before
    assert rt.exec(lab, "h1", ["whoami"]).stdout == b"learner\n"
    assert before["passwd"] != Path("/etc/passwd").read_bytes()
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
    # The machine's accounts: the lab's own, whichever path reaches them.
    lab_passwd = rt.exec(lab, "h1", ["cat", "/etc/passwd"]).stdout
    assert rt.exec(lab, "h1", ["cat", "/.machine-etc/passwd"]).stdout == lab_passwd
    for backup in ("passwd-", "group-"):
        assert rt.exec(lab, "h1", ["test", "-e", f"/etc/{backup}"]).exit_code != 0, backup
        if Path("/etc", backup).is_file():
            assert rt.exec(lab, "h1", ["cat", f"/.machine-etc/{backup}"]).stdout == b""
    # Secrets: empty, whichever path reaches them (the stand-ins exist either way).
    for path in ("/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/sudoers.d"):
        assert rt.exec(lab, "h1", ["test", "-e", path]).exit_code == 0, path
    for name in ("shadow", "gshadow", "ssh", "ssl/private", "sudoers.d"):
        if not os.path.exists(f"/etc/{name}"):
            continue
        for path in (f"/etc/{name}", f"/.machine-etc/{name}"):
            res = sh(rt, lab, "h1", f"if [ -d {path} ]; then ls -A {path}; else cat {path}; fi")
            assert (res.exit_code, res.stdout) == (0, b""), (path, res)
    # Nothing of it is the lab's to change, nor the machine's through it.
    for script in ("echo x > /etc/hosts", "touch /etc/new", "rm -f /etc/motd",
                   "ln -s /tmp /etc/x", "touch /.machine-etc/new"):
        assert sh(rt, lab, "h1", script).exit_code != 0, script
    assert not os.path.exists("/etc/new") and not os.path.exists("/etc/x")


@pytest.mark.root
def test_a_lab_started_on_the_machines_userland_has_its_own_etc_dir(
        rt: LocalRuntime, lab: str) -> None:
    # Its /etc is a directory of the lab's disk, not the machine's: its entries are
    # the lab's files, stand-ins and links, never a mount over the machine's names.
    res = rt.exec(lab, "h1", ["stat", "-c", "%F", "/etc", "/etc/passwd", "/etc/nsswitch.conf"])
    assert res.stdout.split(b"\n")[:3] == [b"directory", b"regular file", b"symbolic link"]
    pid = Path(rt.names.host_dir(lab, "h1"), "init.pid").read_text()
    points = [line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
    assert "/etc" in points and "/.machine-etc" in points
    assert not [p for p in points if p.startswith("/etc/")], points


@pytest.mark.root
def test_a_lab_without_its_etc_dir_gets_one_at_its_next_sandbox(
        rt: LocalRuntime, lab: str) -> None:
    """A lab started by an older release has no view: its next check or sandbox makes it."""
    view = Path(rt.names.etc_dir(lab), "view")
    shutil.rmtree(view)
    res = rt.run_check(lab, "h1", ["cat", "/etc/passwd"])  # a check: a sandbox of its own
    assert res.exit_code == 0 and b"grader:x:" in res.stdout, res
    assert view.is_dir() and not [p for p in view.parent.iterdir() if p.name.startswith(".")]


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
