"""A local user of the node reads lab secrets from the machine's process table.

/proc/PID/cmdline is world-readable (no hidepid), so a student with a shell account on a
lab node could read every learner's flag with ``cat /proc/*/cmdline``: the first release
put each host's environment on its sandbox's command line (``bwrap --setenv KEY VALUE``,
alive as long as the lab), its service command on the init's (``fg-init COMMAND``), and
the environment again on every exec's, terminal's and check's (``env -i KEY=VALUE``
behind a waiting ``nsenter``). Here a lab holds one secret in its host's environment and
another in its service command; while an exec, a terminal and a check run, every
process's command line on the machine is read: neither secret is in any of them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, Limits, SubnetSpec
from forge.runtime.base import ExecResult
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import tty_read_until, tty_send

from ..support.prefixes import runtime_prefix
from ..support.proc import machine_cmdlines

pytestmark = pytest.mark.root

ENV_SECRET = "FLAG{env-" + secrets.token_hex(8) + "}"
CMD_SECRET = "cmd-" + secrets.token_hex(8)
# The service keeps its shell alive (no exec of a last simple command), so a command
# line holding the command would stay readable for the whole lab.
SERVICE = f": {CMD_SECRET}; while :; do sleep 1; done"
# What the exec and the check run: long enough to be scanned, and proof that the
# environment still reaches them.
# 6 s: the exec's and the check's sleeps must overlap though each starts its own sandbox.
SLOW = ["/bin/sh", "-c", 'sleep 6; printf "%s|%s" "$FLAG" "$(pwd)"']


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    state = tmp_path_factory.mktemp("cmdline-state")
    runtime = LocalRuntime(str(state), prefix=runtime_prefix("c"))
    assert runtime.check() == []
    yield runtime
    for info in runtime.list():
        runtime.destroy(info.lab_id)
    runtime.close()
    shutil.rmtree(state, ignore_errors=True)


def _spec(lab_id: str, personal: bool = True) -> LabSpec:
    """One host whose environment holds ENV_SECRET and whose service command holds
    CMD_SECRET (without ``personal``: the shape a warm pool builds, with neither)."""
    extra: dict[str, object] = {}
    if personal:
        extra = {"environment": {"FLAG": ENV_SECRET}, "command": SERVICE}
    host = HostSpec("target", networks=[("office", "10.94.1.10")],
                    **extra)  # type: ignore[arg-type]
    return LabSpec(lab_id, [SubnetSpec("office", "10.94.1.0/24")], [host],
                   Limits(memory_mb=256, disk_mb=16))


@pytest.fixture
def lab(rt: LocalRuntime) -> Iterator[str]:
    lab_id = "cl-" + secrets.token_hex(4)
    try:
        rt.create(_spec(lab_id))
        yield lab_id
    finally:
        with contextlib.suppress(Exception):
            rt.destroy(lab_id)


def _leaks(seen: dict[int, bytes]) -> dict[int, bytes]:
    return {pid: line[:300] for pid, line in seen.items()
            if ENV_SECRET.encode() in line or CMD_SECRET.encode() in line}


def _fd_targets(pids: set[int]) -> list[str]:
    targets = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    targets.append(f"{pid}:{os.readlink(f'/proc/{pid}/fd/{fd}')}")
    return targets


def _wait_for_service() -> None:
    deadline = time.monotonic() + 10
    service_seen = False
    while not service_seen and time.monotonic() < deadline:  # the service is up
        service_seen = any(c == b"sleep\x001\x00" for c in machine_cmdlines().values())
        time.sleep(0.05)
    assert service_seen


def test_no_lab_secret_on_any_command_line_of_the_machine(rt: LocalRuntime, lab: str) -> None:
    results: dict[str, ExecResult] = {}

    def run(kind: str) -> None:
        if kind == "exec":
            results[kind] = rt.exec(lab, "target", SLOW, timeout=30)
        else:
            results[kind] = rt.run_check(lab, "target", SLOW, timeout=30)

    _wait_for_service()
    tty = rt.tty(lab, "target")
    try:
        tty_send(tty, b'echo "[$FLAG]"\n')
        assert ENV_SECRET.encode() in tty_read_until(tty, rb"\[FLAG\{env-")
        workers = [threading.Thread(target=run, args=(k,)) for k in ("exec", "check")]
        for w in workers:
            w.start()
        leaks: dict[int, bytes] = {}
        scans = 0
        saw_both = False
        while any(w.is_alive() for w in workers):
            seen = machine_cmdlines()
            scans += 1
            leaks.update(_leaks(seen))
            # the exec's and the check's `sleep 6` both running: the scan saw them live
            saw_both = saw_both or sum(c == b"sleep\x006\x00" for c in seen.values()) >= 2
            time.sleep(0.02)
        for w in workers:
            w.join()
        leaks.update(_leaks(machine_cmdlines()))
    finally:
        tty.close()
    assert saw_both, f"the exec and the check were never seen running ({scans} scans)"
    assert leaks == {}, "lab secrets on the machine's process table:\n" + "\n".join(
        f"{pid}: {line!r}" for pid, line in leaks.items())
    # The environment and working directory are what they always were.
    assert results["exec"].stdout_text == f"{ENV_SECRET}|/workspace"
    assert results["check"].stdout_text == f"{ENV_SECRET}|/workspace"


def test_the_options_descriptor_never_reaches_the_lab(rt: LocalRuntime, lab: str) -> None:
    res = rt.exec(lab, "target", shell="ls -l /proc/self/fd/ | grep -c memfd")
    assert res.stdout_text.strip() == "0", res.stdout_text
    # No lab process (the sandbox's bwrap, its init, the service) holds a memfd either.
    pids = rt.cgroups.pids(rt.names.lab(lab))
    assert pids
    held = [t for t in _fd_targets(pids) if "memfd:" in t]
    assert held == []


def test_a_claimed_pool_labs_secrets_are_on_no_command_line(tmp_path: Path) -> None:
    """A warm pool lab gets its scenario's environment and command at claim, through
    its init's start line: neither is on a command line, while it starts or after."""
    rt = LocalRuntime(str(tmp_path), prefix=runtime_prefix("c"))
    try:
        rt.warm({"shape": (_spec("x", personal=False), 1)}, quiet_s=0.05, poll_s=0.1,
                settle_s=30)
        assert rt.warm_pool is not None
        end = time.monotonic() + 60
        while not rt.warm_pool.ready_ids():
            assert time.monotonic() < end, "the pool never filled"
            time.sleep(0.05)
        lab_id = "scn-" + secrets.token_hex(8)
        leaks: dict[int, bytes] = {}
        done = threading.Event()

        def scan() -> None:  # the claim and the service's start, as they happen
            while not done.is_set():
                leaks.update(_leaks(machine_cmdlines()))

        scanner = threading.Thread(target=scan)
        scanner.start()
        try:
            rt.create(_spec(lab_id))
            _wait_for_service()
        finally:
            done.set()
            scanner.join()
        assert rt.warm_pool.stats.claimed == 1
        res = rt.exec(lab_id, "target", shell='echo "$FLAG"')
        assert res.stdout_text == ENV_SECRET + "\n"  # the scenario's environment
        leaks.update(_leaks(machine_cmdlines()))
        assert leaks == {}, leaks
    finally:
        rt.close()
        for info in rt.list():
            rt.destroy(info.lab_id)
