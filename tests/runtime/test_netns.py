"""Stepping a thread into a lab's network namespace and back (``netns._inside``): the
runtime's build threads wire lab after lab, so a thread left in one lab's namespace would
wire the next lab, or the machine's egress, into the wrong network (root)."""

from __future__ import annotations

import fcntl
import os
import secrets
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.local import userns_holder
from forge.runtime.local.netns import (
    create_host_netns,
    create_netns,
    in_netns,
    netns_path,
    remove_netns,
    user_ns_fd,
    userns_problem,
)

pytestmark = pytest.mark.root


def _here() -> int:
    """The inode of the calling thread's network namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


@pytest.fixture
def name() -> Iterator[str]:
    made = "tns-" + secrets.token_hex(4)
    yield made
    remove_netns(made)


class Boom(Exception):
    pass


def test_a_thread_steps_into_a_new_namespace_and_back(name: str) -> None:
    home = _here()
    seen: list[int] = []
    create_netns(name, lambda: seen.append(_here()))
    assert seen and seen[0] != home
    assert os.stat(netns_path(name)).st_ino == seen[0]  # the namespace it set up is named
    assert _here() == home
    assert in_netns(name, _here) == seen[0]
    assert _here() == home


def test_a_failure_inside_still_brings_the_thread_back(name: str) -> None:
    home = _here()

    def fail() -> None:
        raise Boom("setup failed")

    with pytest.raises(Boom):
        create_netns(name, fail)
    assert _here() == home
    assert not os.path.exists(netns_path(name))  # a failed create leaves no name behind
    create_netns(name)
    with pytest.raises(Boom):
        in_netns(name, fail)
    assert _here() == home
    with pytest.raises(FileNotFoundError):
        in_netns(name + "-missing", _here)
    assert _here() == home


def test_other_threads_never_see_the_step(name: str) -> None:
    """Only the stepping thread changes namespace: another thread, looking meanwhile,
    stays in the machine's."""
    create_netns(name)
    home = _here()
    inside, looked = threading.Event(), threading.Event()
    other: list[int] = []

    def look() -> None:
        assert inside.wait(30)
        other.append(_here())
        looked.set()

    def hold() -> int:
        inside.set()
        assert looked.wait(30)
        return _here()

    watcher = threading.Thread(target=look)
    watcher.start()
    there = in_netns(name, hold)
    watcher.join(30)
    assert other == [home] and there != home and _here() == home


def test_a_process_that_could_not_step_back_is_refused_before_any_lab(
        tmp_path: Path) -> None:
    """Root of a user namespace of its own over the machine's network (``unshare -U -r``:
    a rootless container on the host's network) may create a namespace but not step back
    out of it: the runtime says so at its check and refuses to create a lab, where a
    thread left in a lab's namespace would have ended the process."""
    script = (
        "import sys, tempfile\n"
        "from forge.runtime.base import RuntimeUnavailable\n"
        "from forge.runtime.local import LocalRuntime\n"
        "from tests.runtime.helpers import simple_lab\n"
        "rt = LocalRuntime(tempfile.mkdtemp(dir=sys.argv[1]), prefix='tu')\n"
        "print(rt.check())\n"
        "try:\n"
        "    rt.create(simple_lab('userns-1'))\n"
        "except RuntimeUnavailable as exc:\n"
        "    print('refused:', exc)\n"
    )
    if subprocess.run(["unshare", "-U", "-r", "true"], check=False,
                      capture_output=True, timeout=30).returncode != 0:
        pytest.skip("this machine refuses user namespaces (the case cannot arise here)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        ["unshare", "-U", "-r", sys.executable, "-c", script, str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=root, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "cannot step back into its own network namespace" in out.stdout
    assert "refused: local runtime unavailable" in out.stdout
    assert not os.listdir(tmp_path / os.listdir(tmp_path)[0])  # no lab was begun


OWNER = 65533  # a uid no process of the test machine runs as
NS_GET_OWNER_UID = 0xB704


def _owner_uid(name: str) -> int:
    fd = user_ns_fd(name)
    try:
        return int(struct.unpack("I", fcntl.ioctl(fd, NS_GET_OWNER_UID, bytes(4)))[0])
    finally:
        os.close(fd)


def _owner(name: str) -> str:
    """The user namespace owning the named network namespace, as readlink shows it."""
    fd = user_ns_fd(name)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_a_host_namespace_has_a_user_namespace_of_its_own(name: str) -> None:
    seen: list[int] = []
    create_host_netns(name, OWNER, lambda: seen.append(_here()))
    assert seen == [os.stat(netns_path(name)).st_ino]  # setup ran inside it
    machine = os.readlink("/proc/self/ns/user")
    owner = _owner(name)
    assert owner != machine
    # It belongs to the lab's uid, not root: what its processes use of the per-user counts
    # (inotify, message queues, signals) is charged to that uid in the machine's namespace.
    assert _owner_uid(name) == OWNER
    other = "tns-" + secrets.token_hex(4)
    create_host_netns(other, OWNER)
    try:
        assert _owner(other) not in (owner, machine)  # one per host, never shared
    finally:
        remove_netns(other)
    # Every id maps to itself: a process joining it keeps its uid, files keep their owners.
    fd = user_ns_fd(name)
    try:
        for table in ("uid_map", "gid_map"):
            out = subprocess.run(["nsenter", f"--user=/proc/self/fd/{fd}", "--",
                                  "cat", f"/proc/self/{table}"], pass_fds=(fd,),
                                 capture_output=True, text=True, timeout=30, check=True)
            assert out.stdout.split() == ["0", "0", "4294967295"], out
    finally:
        os.close(fd)


def test_a_host_namespace_never_belongs_to_root(name: str) -> None:
    with pytest.raises(ValueError, match="not root"):
        create_host_netns(name, 0)
    assert not os.path.exists(netns_path(name))


def test_a_host_namespace_that_fails_its_setup_leaves_nothing(name: str) -> None:
    def refuse() -> None:
        raise Boom("sysctl refused")

    with pytest.raises(Boom):
        create_host_netns(name, OWNER, refuse)
    assert not os.path.exists(netns_path(name))
    # The process that made the namespaces (the owner's uid) ended with them.
    end = time.monotonic() + 10
    while _of_uid(OWNER):
        assert time.monotonic() < end, _of_uid(OWNER)
        time.sleep(0.02)


def test_a_refused_user_namespace_is_reported_and_leaves_nothing(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The helper started without CAP_SYS_ADMIN in its bounding set (as in a container
    # that withholds it): its maker cannot keep the capability, and says so.
    wrapper = tmp_path / "python-without-sys-admin"
    wrapper.write_text(f"#!/bin/sh\nexec setpriv --bounding-set=-sys_admin -- "
                       f"{sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(userns_holder, "_helper", None)
    monkeypatch.setattr(userns_holder, "PYTHON", str(wrapper))
    with pytest.raises(OSError, match="cannot make a user namespace for a host: keep "
                                      "CAP_SYS_ADMIN: Operation not permitted"):
        create_host_netns(name, OWNER)
    assert not os.path.exists(netns_path(name))
    helper = userns_holder._helper
    assert helper is not None
    monkeypatch.undo()
    userns_holder._stop(helper)


def test_disabled_user_namespaces_are_named(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    limit = tmp_path / "max_user_namespaces"
    monkeypatch.setattr("forge.runtime.local.netns.MAX_USER_NAMESPACES", str(limit))
    limit.write_text("0\n")
    assert "user.max_user_namespaces = 0" in (userns_problem() or "")
    limit.write_text("15000\n")
    assert userns_problem() is None


def _of_uid(uid: int) -> list[int]:
    """Live (not zombie) processes whose real uid is ``uid``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        if (int(fields["Uid"].split()[0]) == uid
                and not fields["State"].strip().startswith("Z")):
            found.append(int(pid))
    return found
