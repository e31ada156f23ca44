"""Attack: keep processes running on the machine after one's lab is destroyed.

A learner's processes leave their session (``setsid``), get re-parented (double fork) and
try to move out of the lab's cgroups (writing to a cgroup.procs file, which the sandbox
does not even show). Teardown finds a lab's processes in one cgroup hierarchy (the pids
one on v1; the others only when their removal is busy), so any way out of it would
outlive the lab: after destroy, no process of the lab's user is left anywhere on the
machine. (A host agent moving a process out of the pids tree only:
tests/runtime/test_cgroup_teardown.py.)"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime

from ..support.prefixes import runtime_prefix

ESCAPE = (
    "(setsid sh -c 'sleep 600 & sleep 600' &); "
    "for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/pids/cgroup.procs; do "
    "echo $$ > $f 2>/dev/null && echo moved; done; exec sleep 600"
)


def _pids_of_uid(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii") as fh:
                uids = next(line for line in fh if line.startswith("Uid:")).split()[1:]
        except (OSError, StopIteration):
            continue
        if str(uid) in uids:
            found.append(int(entry))
    return found


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(str(tmp_path), prefix=runtime_prefix("e"))
    yield runtime
    for info in runtime.list():
        runtime.destroy(info.lab_id)
    runtime.close()


def test_escaped_processes_die_with_the_lab(rt: LocalRuntime) -> None:
    lab = "esc-" + secrets.token_hex(3)
    rt.create(LabSpec(lab, [SubnetSpec("lan", "10.206.0.0/24")],
                      [HostSpec("box", networks=[("lan", None)], command=ESCAPE)]))
    uid = rt.identity(lab).learner
    # The service's escape and an exec's (whose own leaf is killed when it returns).
    res = rt.exec(lab, "box", ["sh", "-c", ESCAPE.replace("exec sleep 600", "true")])
    assert res.exit_code == 0 and b"moved" not in res.stdout
    end = time.monotonic() + 30
    while len(_pids_of_uid(uid)) < 3 and time.monotonic() < end:
        time.sleep(0.05)
    assert len(_pids_of_uid(uid)) >= 3  # the service and its escaped sleepers run
    rt.destroy(lab)
    assert _pids_of_uid(uid) == []
