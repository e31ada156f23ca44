"""Lab processes start with default signal handling and nothing blocked, whatever the
orchestrator inherited: started as a CI background job (SIGINT and SIGQUIT ignored) or
from a thread blocking signals, ^C must still reach a learner's program."""

from __future__ import annotations

import secrets
import signal
import tempfile
from collections.abc import Iterator

import pytest

from forge.runtime.local import LocalRuntime

from .helpers import simple_lab, tty_read_until, tty_send

# SigIgn/SigBlk of the host's service: its lab-user process started inside the host.
STATUS = """
import os
def sig(pid):
    f = dict(l.split(":\\t", 1) for l in open(f"/proc/{pid}/status") if ":\\t" in l)
    return f["SigIgn"].strip() + "/" + f["SigBlk"].strip(), f
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        masks, f = sig(pid)
    except OSError:
        continue
    if pid != str(os.getpid()) and f["PPid"].strip() != "0" and f["Uid"].split()[0] != "0":
        print("service", masks)
"""
CLEAN = "0000000000000000/0000000000000000"
HOSTILE = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGPIPE, signal.SIGHUP)


@pytest.fixture()
def hostile_parent(prefix: str) -> Iterator[LocalRuntime]:
    """A runtime started by a parent ignoring the usual stop signals and blocking SIGUSR1
    (its worker threads inherit that mask); both restored afterwards."""
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in HOSTILE}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGINT})
    state = tempfile.mkdtemp(prefix="forge-sig-")
    runtime = LocalRuntime(state, prefix=prefix, workers=2)
    try:
        yield runtime
    finally:
        for info in runtime.list():
            if info.lab_id.startswith("sig-"):
                runtime.destroy(info.lab_id)
        runtime.close()
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_lab_processes_start_with_default_signals(hostile_parent: LocalRuntime) -> None:
    rt = hostile_parent
    lab = "sig-" + secrets.token_hex(3)
    rt.create(simple_lab(lab, command="sleep 1000"))
    service = rt.exec(lab, "box", ["python3", "-c", STATUS]).stdout_text.splitlines()
    assert service and set(service) == {f"service {CLEAN}"}, service
    own = rt.exec(lab, "box", ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])
    assert own.stdout_text.split() == ["SigBlk:", CLEAN[:16], "SigIgn:", CLEAN[:16]]
    tty = rt.tty(lab, "box")
    try:
        tty_send(tty, b"cat /proc/self/status | grep -E '^Sig(Ign|Blk)' | tr -d '\\t'\n")
        seen = tty_read_until(tty, rb"SigIgn:[0-9a-f]{16}")
    finally:
        tty.close()
    assert b"SigIgn:0000000000000000" in seen and b"SigBlk:0000000000000000" in seen
