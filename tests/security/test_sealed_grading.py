"""A learner inside a lab attacks its grader, its neighbours and the machine (issue 12).

Each test is an attack that worked on the first release: it ran checks as the learner's
uid inside the learner's own pid and mount namespaces, with expected values in argv,
opened answer files whatever they were, ran every lab as one uid, had no seccomp filter
and wrote lab files to the machine's disk. A process that survives the seal is played
by a template service (the learner cannot start one, but an exploited service could be
one): it runs as the lab user in the host's namespaces while the checks run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, Limits, SubnetSpec
from forge.runtime.base import LabSealed
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import tty_read_until, tty_send

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root

SECRET = "S3cr3t" + secrets.token_hex(8)

# A service that plays the surviving attacker: it scans every visible process for the
# secret (argv, environment, stdin), tries to ptrace-attach to each, and feeds a FIFO.
SPY = r"""#!/usr/bin/env python3
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
secret = open("/srv/secret.txt").read().strip()
seen = set()
out = open("/srv/spy.log", "a", buffering=1)
fifo = "/workspace/answer.txt"
end = time.time() + 120
while time.time() < end:
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid in seen:
            continue
        seen.add(pid)
        for part in ("cmdline", "environ", "fd/0"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as fh:
                    os.set_blocking(fh.fileno(), False)
                    data = fh.read(65536) or b""
            except (OSError, TypeError):
                continue
            if secret.encode() in data:
                out.write(f"LEAK {pid} {part}\n")
        if libc.ptrace(16, int(pid), None, None) == 0:
            out.write(f"ATTACHED {pid}\n")
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, secret.encode() + b"\n")
        os.close(fd)
        out.write("FED\n")
    except OSError:
        pass
    time.sleep(0.01)
"""


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("sealed-state")
    runtime = LocalRuntime(str(state), prefix=runtime_prefix("s"))
    assert runtime.check() == []
    yield runtime
    for info in runtime.list():
        runtime.destroy(info.lab_id)
    runtime.close()
    shutil.rmtree(state, ignore_errors=True)


def _lab(lab_id: str, *, spy: bool = False, disk_mb: int = 16) -> LabSpec:
    learner = HostSpec(
        "learner", networks=[("office", "10.93.1.10")],
        command="python3 /srv/spy.py" if spy else None,
        files={"/srv/spy.py": SPY, "/srv/secret.txt": SECRET} if spy else {},
    )
    other = HostSpec("peer", networks=[("office", "10.93.1.20")])
    return LabSpec(lab_id, [SubnetSpec("office", "10.93.1.0/24")], [learner, other],
                   Limits(memory_mb=256, disk_mb=disk_mb))


@pytest.fixture
def lab(rt: LocalRuntime) -> Iterator[str]:
    lab_id = "sg-" + secrets.token_hex(4)
    rt.create(_lab(lab_id))
    yield lab_id
    rt.destroy(lab_id)


@pytest.fixture
def spy_lab(rt: LocalRuntime) -> Iterator[str]:
    lab_id = "sp-" + secrets.token_hex(4)
    rt.create(_lab(lab_id, spy=True))
    yield lab_id
    rt.destroy(lab_id)


def _learner(rt: LocalRuntime, lab: str, script: str) -> str:
    res = rt.exec(lab, "learner", shell=script, timeout=20)
    return res.stdout_text + res.stderr_text


# A check that passes only when the answer file holds the expected value, given on stdin.
CHECK = ["/bin/sh", "-c", 'read -r want; test "$(cat /workspace/answer.txt)" = "$want"']


def test_fifo_answer_fed_by_a_surviving_process_does_not_pass(rt: LocalRuntime,
                                                              spy_lab: str) -> None:
    _learner(rt, spy_lab, "mkfifo /workspace/answer.txt")
    deadline = time.monotonic() + 10
    log = Path(rt.names.data_dir(spy_lab, "learner")) / "srv" / "spy.log"
    while "FED" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)  # the attacker is writing into the FIFO whenever it is opened
    rt.seal(spy_lab)
    res = rt.run_check(spy_lab, "learner", CHECK, stdin=f"{SECRET}\n".encode(), timeout=30)
    assert res.exit_code != 0 and not res.timed_out
    # The FIFO keeps its name in the snapshot as an empty regular file: nothing fed it.
    kept = rt.run_check(spy_lab, "learner", ["/bin/sh", "-c",
                                             "test -f /workspace/answer.txt && "
                                             "wc -c < /workspace/answer.txt"], timeout=5)
    assert kept.stdout_text.split() == ["0"]


def test_grader_argv_env_and_stdin_are_invisible_and_untraceable(rt: LocalRuntime,
                                                                 spy_lab: str) -> None:
    _learner(rt, spy_lab, "echo wrong > /workspace/answer.txt")
    rt.seal(spy_lab)
    # The check holds the secret in argv, environment-free stdin, and keeps running a while.
    argv = ["/bin/sh", "-c", f"read -r want; sleep 1.5; echo {SECRET} >/dev/null"]
    res = rt.run_check(spy_lab, "learner", argv, stdin=f"{SECRET}\n".encode(), timeout=10)
    assert res.exit_code == 0
    log = (Path(rt.names.data_dir(spy_lab, "learner")) / "srv" / "spy.log").read_text()
    assert "LEAK" not in log
    me = os.getpid()
    assert "ATTACHED" not in log, log
    assert str(me) not in log


def test_check_runs_as_a_grader_uid_no_lab_process_has(rt: LocalRuntime, lab: str) -> None:
    ident = rt.identity(lab)
    assert ident.grader != ident.learner
    res = rt.run_check(lab, "learner", ["/bin/sh", "-c", "id -u; ls /proc | grep -c '^[0-9]'"])
    uid, visible = res.stdout_text.split()
    assert int(uid) == ident.grader
    assert int(visible) <= 4  # bwrap's init, the shell, ls, grep: no lab process at all
    procs = _learner(rt, lab, "ps -eo uid= | sort -u")
    assert str(ident.grader) not in procs.split()


def test_symlink_out_of_the_tree_is_not_followed(rt: LocalRuntime, lab: str) -> None:
    _learner(rt, lab, "ln -s /proc/1/cmdline /workspace/answer.txt; "
                      "echo inside > /workspace/real.txt; ln -s real.txt /workspace/ok.txt; "
                      "ln -s ../home/../workspace/real.txt /workspace/ok2.txt; "
                      "mkdir /workspace/d; ln -s /srv /workspace/d/up; "
                      "ln -s d/up/../../etc/passwd /workspace/sneaky.txt")
    rt.seal(lab)
    # A link out of the trees keeps only its name (an empty file): nothing is read through it.
    res = rt.run_check(lab, "learner", ["/bin/sh", "-c",
                                        "for f in answer ok ok2 sneaky; do "
                                        "c=$(cat /workspace/$f.txt 2>/dev/null); "
                                        "echo \"${c:-no-$f}\"; done"])
    assert res.stdout_text.split() == ["no-answer", "inside", "inside", "no-sneaky"]


def test_a_learner_process_racing_the_grader_is_ended_by_the_seal(rt: LocalRuntime,
                                                                  lab: str) -> None:
    tty = rt.tty(lab, "learner")
    tty_send(tty, b"(while :; do echo right > /workspace/answer.txt; sleep 0.01; done) &\n")
    deadline = time.monotonic() + 10
    answer = Path(rt.names.data_dir(lab, "learner")) / "workspace" / "answer.txt"
    while not answer.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rt.seal(lab) >= 2  # the shell and its loop, at least
    assert tty.closed
    answer.write_text("wrong\n")
    time.sleep(0.2)
    assert answer.read_text() == "wrong\n"  # nothing of the learner's still writes
    with pytest.raises(LabSealed):
        rt.tty(lab, "learner")
    with pytest.raises(LabSealed):
        rt.exec(lab, "learner", ["true"])
    res = rt.run_check(lab, "learner", CHECK, stdin=b"right\n")
    assert res.exit_code == 1


def test_fifo_and_devices_never_block_the_grader(rt: LocalRuntime, lab: str) -> None:
    _learner(rt, lab, "mkfifo /workspace/answer.txt; python3 -c \"import socket; "
                      "s=socket.socket(socket.AF_UNIX); s.bind('/workspace/sock')\"")
    rt.seal(lab)
    # Were the fifo still there, `cat` would block until the check's own timeout.
    res = rt.run_check(lab, "learner", ["/bin/sh", "-c", "cat /workspace/answer.txt; "
                                        "for f in answer.txt sock; do "
                                        "[ -p /workspace/$f ] || [ -S /workspace/$f ] "
                                        "&& echo special-$f; [ -f /workspace/$f ] "
                                        "&& echo kept-$f; done"], timeout=30)
    assert not res.timed_out
    # Kept by name as empty regular files (never absent, never a FIFO or socket).
    assert res.stdout_text.split() == ["kept-answer.txt", "kept-sock"]


def test_two_live_labs_never_share_a_uid_and_keyrings_are_closed(rt: LocalRuntime) -> None:
    ids = ["ka-" + secrets.token_hex(4), "kb-" + secrets.token_hex(4)]
    for lab_id in ids:
        rt.create(_lab(lab_id))
    try:
        a, b = (rt.identity(i) for i in ids)
        assert len({a.learner, a.grader, b.learner, b.grader}) == 4
        add_key = ("import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
                   "r = libc.syscall(248, b'user', b'forge', b'leak', 4, -4); "  # add_key
                   "print(r, ctypes.get_errno())")
        out = _learner(rt, ids[0], f'python3 -c "{add_key}"').split()
        assert out == ["-1", "1"]  # EPERM: no keyring a second lab could read
    finally:
        for lab_id in ids:
            rt.destroy(lab_id)
    claims = rt.uids.claimed()
    assert a.learner not in claims and b.learner not in claims  # released on teardown


def test_no_new_user_namespace_mount_or_bpf_in_a_lab(rt: LocalRuntime, lab: str) -> None:
    out = _learner(rt, lab, "unshare -U true; echo user=$?; unshare -Ur true; echo root=$?; "
                            "python3 -c 'import os; os.unshare(os.CLONE_NEWUSER)' 2>&1 | "
                            "tail -1")
    assert "user=1" in out and "root=1" in out and "Operation not permitted" in out
    tty = rt.tty(lab, "learner")
    tty_send(tty, b"unshare -U true; echo tty-user=$?\n")
    text = tty_read_until(tty, rb"tty-user=\d")
    tty.close()
    assert b"tty-user=1" in text


def test_disk_fill_gives_enospc_in_the_lab_and_spares_the_machine(rt: LocalRuntime) -> None:
    lab_id = "df-" + secrets.token_hex(4)
    rt.create(_lab(lab_id, disk_mb=16))
    try:
        before = shutil.disk_usage(rt.names.state_dir).used
        out = _learner(rt, lab_id, "dd if=/dev/zero of=/workspace/fill bs=1M count=64 2>&1; "
                                   "echo rc=$?; dd if=/dev/zero of=/tmp/more bs=1M count=8 2>&1;"
                                   " echo rc2=$?; df -k /workspace | tail -1")
        after = shutil.disk_usage(rt.names.state_dir).used
        assert "No space left on device" in out and "rc=1" in out and "rc2=1" in out
        assert after - before < 8 << 20  # the 64 MiB never reached the machine's disk
        assert os.path.ismount(rt.names.data_root(lab_id))
    finally:
        rt.destroy(lab_id)
    assert not os.path.exists(rt.names.lab_dir(lab_id))
