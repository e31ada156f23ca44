"""open_host hands out a host's namespaces and root only while the pid is that host's.

A named network namespace of the test's own stands for the host's, so a pid reused by
another process after the test's ended (which runs in the machine's) is refused too.
The window the pidfd closes (a pid reused between open_host's opens) cannot be timed in a
test: the check after the opens is what it adds.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from forge.runtime.local.execute import enter_argv, open_host
from forge.runtime.local.netns import create_host_netns, remove_netns, user_ns_fd

pytestmark = pytest.mark.root


@pytest.fixture
def netns() -> Iterator[str]:
    name = "fg-oh-" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _in(netns: str) -> subprocess.Popen[bytes]:
    """A process in ``netns``, once it is there (ip netns exec execs into it)."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "30"])
    want = os.stat(f"/run/netns/{netns}")
    for _ in range(200):  # bounded
        try:
            got = os.stat(f"/proc/{proc.pid}/ns/net")
        except FileNotFoundError:
            break
        if (got.st_dev, got.st_ino) == (want.st_dev, want.st_ino):
            return proc
        subprocess.run(["sleep", "0.01"], check=True)
    proc.kill()
    proc.wait()
    raise AssertionError("the process never entered the namespace")


def test_descriptors_only_while_the_pid_is_the_hosts(netns: str) -> None:
    before = set(os.listdir("/proc/self/fd"))
    path = f"/run/netns/{netns}"
    proc = _in(netns)
    try:
        fds = open_host(proc.pid, path)
        try:
            assert len(fds) == 6  # its user namespace is the machine's: not entered
            assert not [a for a in enter_argv(fds, [], ["PATH"], ["true"], 65534, 0, 0)
                        if a.startswith("--user")]
            assert os.path.samestat(os.fstat(fds[-1]), os.stat(f"/proc/{proc.pid}/root"))
        finally:
            for fd in fds:
                os.close(fd)
        with pytest.raises(ProcessLookupError):  # a process of another namespace (ours)
            open_host(os.getpid(), path)
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(OSError):  # ended and reaped: its pid names nothing, or another's
        open_host(proc.pid, path)
    assert set(os.listdir("/proc/self/fd")) == before  # nothing left open either way


def test_a_hosts_own_user_namespace_is_entered_too() -> None:
    """A host made by ``create_host_netns`` holds its capabilities in a user namespace of
    its own: a learner process must join it (with the machine's, an approved NET_ADMIN
    would reach the lab switch), and the command line says so."""
    name = "fg-oh-" + secrets.token_hex(3)
    create_host_netns(name, 65533)
    owner = user_ns_fd(name)
    path = f"/run/netns/{name}"
    proc = subprocess.Popen(["nsenter", f"--net={path}", f"--user=/proc/self/fd/{owner}",
                             "--", "sleep", "30"], pass_fds=(owner,))
    try:
        for _ in range(200):  # bounded: until nsenter has joined both
            if os.path.samestat(os.stat(f"/proc/{proc.pid}/ns/user"), os.fstat(owner)):
                break
            subprocess.run(["sleep", "0.01"], check=True)
        fds = open_host(proc.pid, path)
        try:
            assert len(fds) == 7
            assert os.path.samestat(os.fstat(fds[5]), os.fstat(owner))
            argv = enter_argv(fds, [], ["PATH"], ["true"], 65534, 0, 0)
            assert f"--user=/proc/self/fd/{fds[5]}" in argv
        finally:
            for fd in fds:
                os.close(fd)
    finally:
        proc.kill()
        proc.wait()
        os.close(owner)
        remove_netns(name)
