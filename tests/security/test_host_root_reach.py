"""Attack: get root inside a lab host, then reach the machine.

A host's approved capabilities are held in the host's own user namespace. The sandbox
around it (its mounts, its pid namespace, bwrap's pid 1 and the init that starts the
service) stays in the machine's: were they in the host's, a learner approved
``SYS_PTRACE`` could attach to those root processes, and root there (holding every
capability of the host's user namespace) could remount the sandbox's read-only view of
the machine's ``/usr`` writable and replace a machine program. Tried both ways: attaching
to the host's root processes, and remounting as root of the host's user namespace."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local.netns import user_ns_fd
from forge.runtime.local.reconcile import init_pid
from tests.runtime.helpers import leftovers
from tests.support.one_lab import one_lab

pytestmark = pytest.mark.root

# ptrace(PTRACE_ATTACH) each pid given; prints "pid:ok" or "pid:<errno name>".
ATTACH = """import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
for pid in map(int, sys.argv[1:]):
    rc = libc.ptrace(16, pid, None, None)
    print(f"{pid}:" + ("ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]))
    if rc == 0:
        libc.ptrace(17, pid, None, None)
"""

SETNS_OWN = ("import ctypes, errno, os; libc = ctypes.CDLL(None, use_errno=True); "
             "fd = os.open('/proc/self/ns/user', os.O_RDONLY); "
             "rc = libc.setns(fd, 0x10000000); "
             "print(errno.errorcode[ctypes.get_errno()] if rc else 'joined')")


def _holders(top: int, target: str) -> list[int]:
    """Pids of ``top`` and its descendants holding a descriptor that is ``target``."""
    found, todo = [], [top]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
                todo += [int(kid) for kid in fh.read().split()]
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:  # ended meanwhile (a check's short-lived process)
            continue
        links = []
        for fd in fds:
            try:
                links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except FileNotFoundError:
                continue
        if target in links:
            found.append(pid)
    return sorted(found)


def test_the_hosts_root_processes_and_mounts_are_out_of_reach(tmp_path: Path) -> None:
    lab = "rootreach-" + secrets.token_hex(3)
    state = tmp_path / "state"
    planted = f"/usr/fg-planted-{secrets.token_hex(4)}"
    spec = LabSpec(lab, [SubnetSpec("a", "10.75.1.0/24")], [
        HostSpec("box", networks=[("a", "10.75.1.10")], capabilities=["SYS_PTRACE"],
                 command="sleep 3600", files={"/srv/attach.py": ATTACH})])
    try:
        with one_lab(state, spec) as rt:
            prefix = rt.names.prefix
            deadline = time.monotonic() + 30  # the service may still be on its way to sleep
            while True:
                listing = rt.exec(lab, "box", ["ps", "-eo", "pid=,user=,comm="]).stdout_text
                procs = [line.split() for line in listing.splitlines()]
                sleeping = [pid for pid, _user, comm in procs if comm == "sleep"]
                if sleeping:
                    break
                assert time.monotonic() < deadline, procs
                time.sleep(0.1)
            service = sleeping[0]
            # bwrap's pid 1 and the init (the root steps of the listing's own exec are gone)
            roots = [pid for pid, user, _comm in procs if user == "root" and pid in ("1", "2")]
            assert roots == ["1", "2"], procs
            # ... and the bwrap that loaded this very command's filter and waits as its parent.
            res = rt.exec(lab, "box", ["sh", "-c", 'exec python3 /srv/attach.py "$PPID" "$@"',
                                       "attach", service, *roots])
            lines = res.stdout_text.split()
            got = dict(line.split(":") for line in lines)
            parent = lines[0].split(":")[0]
            assert parent not in ("1", "2", service), res
            assert got[service] == "ok", res  # SYS_PTRACE works where it is approved
            for pid in (parent, *roots):
                assert got[pid] == "EPERM", res
            # A learner's filter lets setns join a user namespace (its command joins the host's
            # after the filter is loaded), but the kernel refuses: no lab process holds
            # CAP_SYS_ADMIN over any (here its own, which it is in already).
            join = rt.exec(lab, "box", ["python3", "-c", SETNS_OWN]).stdout_text.strip()
            assert join in ("EINVAL", "EPERM"), join
            # The host's user namespace is held by bwrap's pid 1 alone (its --sync-fd, what
            # the service's nsenter joins): neither the init nor the service holds it, and
            # the learner (SYS_PTRACE approved, in the host's user namespace) cannot reach
            # pid 1's descriptors to take it.
            peek = rt.exec(lab, "box", ["ls", "/proc/1/fd/"])
            assert peek.exit_code != 0 and "denied" in peek.stderr_text, peek
            init = init_pid(rt.names, lab, "box")
            owner = user_ns_fd(rt.names.host_ns(lab, "box"))
            try:
                userns = os.readlink(f"/proc/self/fd/{owner}")
            finally:
                os.close(owner)
            assert _holders(init, userns) == [init]

            # Root of the host's user namespace (what nsenter is in a terminal's first steps)
            # holds no capability over the sandbox's mounts.
            owner = user_ns_fd(rt.names.host_ns(lab, "box"))
            try:
                out = subprocess.run(
                    ["nsenter", f"--mount=/proc/{init}/ns/mnt", f"--user=/proc/self/fd/{owner}",
                     f"--root=/proc/{init}/root", "--", "/bin/sh", "-c",
                     f"mount -o remount,bind,rw /usr; touch {planted}; id -u"],
                    pass_fds=(owner,), capture_output=True, text=True, timeout=30)
            finally:
                os.close(owner)
            assert out.stdout.strip() == "0", out  # it was root there
            assert "permission denied" in out.stderr.lower() or "not permitted" in out.stderr
            assert not os.path.exists(planted)
    finally:
        if os.path.exists(planted):
            os.unlink(planted)
    assert leftovers(prefix, str(state)) == []
