"""open_host hands out a host's namespaces and root only while the pid is that host's."""

from __future__ import annotations

import os
import subprocess

import pytest

from forge.runtime.local.execute import open_host

pytestmark = pytest.mark.root


def test_descriptors_of_a_live_process_in_the_namespace() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        fds = open_host(proc.pid, "/proc/self/ns/net")
        try:
            assert len(fds) == 6
            assert os.path.samestat(os.fstat(fds[-1]), os.stat(f"/proc/{proc.pid}/root"))
        finally:
            for fd in fds:
                os.close(fd)
    finally:
        proc.kill()
        proc.wait()


def test_refused_for_a_process_of_another_namespace_or_one_that_ended() -> None:
    before = set(os.listdir("/proc/self/fd"))
    other = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        for _ in range(100):  # unshare execs sleep in its new namespace (bounded)
            if os.readlink(f"/proc/{other.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            subprocess.run(["sleep", "0.02"], check=True)
        with pytest.raises(ProcessLookupError):
            open_host(other.pid, "/proc/self/ns/net")
    finally:
        other.kill()
        other.wait()
    with pytest.raises(OSError):  # ended and reaped: its pid names nothing (or another)
        open_host(other.pid, "/proc/self/ns/net")
    assert set(os.listdir("/proc/self/fd")) == before  # nothing left open either way
