"""Attack: make a host's init, which stays the sandbox's root, run a program of the lab's.

A host's init is a root shell: it starts the service through ``setpriv`` (and, on a warm
pool lab, runs the claiming scenario's start line first), then stops itself. A
template may give its hosts a PATH with a directory the lab writes (``/workspace/bin``,
seeded by the template or written by the service) or a loader variable (LD_PRELOAD, as a
library-hijack lab would). Had that environment been the init's, the planted ``setpriv``
or ``sleep`` would run as the sandbox's root, and the preloaded library would be loaded
into the root shell itself. The init runs with the fixed PATH and the host's variables
only under ``FGE_`` names; the lab user's shell renames them for the service, which still
gets exactly the host's environment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.bwrap_args import BASE_PATH
from forge.templates.exec_size import COMMAND_VAR
from tests.runtime.helpers import root_processes

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root

HIJACK_PATH = "/workspace/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PRELOAD = "/workspace/missing-hijack.so"
ENV = {"PATH": HIJACK_PATH, "LD_PRELOAD": PRELOAD, "TWO_LINES": "a\nb 'c' $(d)",
       "EMPTY": "", "svc": "not the service's script"}
# A pool shape's own variables: replaced, or dropped, when a scenario claims its lab.
SHAPE_ENV = {"LD_PRELOAD": "/workspace/shape-hijack.so", "SHAPE_ONLY": "x"}
# A planted program leaves a mark in /run where it can (root-owned: only the sandbox's
# root writes there), else in /srv (the lab user's), then runs the real one.
PLANTED = {f"/workspace/bin/{name}": (
    f'#!/bin/sh\nme="{name}-as-$(/usr/bin/id -u)"\n'
    f'/usr/bin/touch "/run/ran-$me" 2>/dev/null || echo "$me" >> /srv/planted\n'
    f'exec /usr/bin/{name} "$@"\n') for name in ("setpriv", "sleep", "env")}
COMMAND = "/usr/bin/env -0 > /srv/service.env; exec sleep 1000"  # a planted sleep: the lab user's


def scenario(lab_id: str) -> LabSpec:
    return LabSpec(lab_id, [SubnetSpec("lan", "10.208.0.0/24")],
                   [HostSpec("box", networks=[("lan", None)], environment=ENV,
                             files=dict(PLANTED), command=COMMAND)])


def shape(lab_id: str) -> LabSpec:
    return LabSpec(lab_id, [SubnetSpec("lan", "10.208.0.0/24")],
                   [HostSpec("box", networks=[("lan", None)], environment=SHAPE_ENV)])


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(str(tmp_path), prefix=runtime_prefix("i"))
    try:
        yield runtime
    finally:
        runtime.warm({})
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()


def _service_env(rt: LocalRuntime, lab_id: str) -> dict[str, str]:
    end = time.monotonic() + 30
    while True:
        out = rt.exec(lab_id, "box", ["/bin/cat", "/srv/service.env"]).stdout
        if out.endswith(b"\0"):
            return dict(p.decode().split("=", 1) for p in out.split(b"\0") if p)
        assert time.monotonic() < end, "the service never ran"
        time.sleep(0.05)


def _assert_no_root_step_was_the_lab_s(rt: LocalRuntime, lab_id: str) -> None:
    # The lab user's own programs may be the planted ones; root's never.
    _service_env(rt, lab_id)
    planted = rt.exec(lab_id, "box", ["/bin/cat", "/srv/planted"]).stdout_text.split()
    learner = rt.identity(lab_id).learner
    assert planted and all(line.endswith(f"-as-{learner}") for line in planted), planted
    ran_as_root = rt.exec(lab_id, "box", ["/bin/ls", "-A", "/run"]).stdout_text.split()
    assert not [name for name in ran_as_root if name.startswith("ran-")], ran_as_root
    # The init (the root shell, stopped once the service is started) holds the fixed PATH
    # and only staged names (the shell's own PWD aside; a pool lab's, the shape's); no
    # root process of the lab holds a variable of the host's under its own name.
    end = time.monotonic() + 30  # the init starts the service, then stops itself
    roots = list(root_processes(rt, lab_id).values())
    while "T" not in [state for _comm, state, _env in roots]:
        assert time.monotonic() < end, "the init never stopped itself"
        time.sleep(0.05)
        roots = list(root_processes(rt, lab_id).values())
    (init_env,) = [env for comm, state, env in roots if state == "T" and comm == "sh"]
    assert init_env["PATH"] == BASE_PATH
    # /proc/PID/environ is what the init was started with: also the service command
    # (FG_CMD, the runtime's, never the lab's), which it unsets before running anything.
    assert {k for k in init_env if not k.startswith("FGE_")} <= {"PATH", "PWD",
                                                                 COMMAND_VAR}, init_env
    for comm, _state, env in roots:
        assert "LD_PRELOAD" not in env and env.get("PATH", BASE_PATH) == BASE_PATH, comm
    # The service still gets exactly the host's environment.
    env = _service_env(rt, lab_id)
    assert env == {**ENV, "HOME": "/home", "LANG": "C.UTF-8", "HOSTNAME": "box",
                   "TERM": "xterm-256color"}, env


def test_a_fresh_lab_s_init_never_runs_the_lab_s_programs(rt: LocalRuntime) -> None:
    lab_id = "scn-00000000000000e1"
    rt.create(scenario(lab_id))
    _assert_no_root_step_was_the_lab_s(rt, lab_id)


def test_a_claimed_pool_lab_s_start_line_never_runs_the_lab_s_programs(
        rt: LocalRuntime) -> None:
    """The claim seeds the scenario's files first, then sends the start line the init's
    root subshell runs before ``setpriv``: with the scenario's PATH there, the planted
    ``setpriv`` would run as root."""
    rt.warm({"one": (shape("x"), 1)}, quiet_s=0.05, poll_s=0.1)
    pool = rt.warm_pool
    assert pool is not None
    end = time.monotonic() + 60
    while pool.status()["one"]["ready"] < 1:
        assert time.monotonic() < end, "the pool never filled"
        time.sleep(0.05)
    lab_id = "scn-00000000000000e2"
    rt.create(scenario(lab_id))
    assert pool.stats.claimed == 1
    _assert_no_root_step_was_the_lab_s(rt, lab_id)
