"""Attack: wake or kill a host's idle init from inside the lab.

A host's init is the sandbox's root shell: once it has started the service it stops
itself (SIGSTOP) and holds the host's namespaces for the lab's life. The lab user (same
pid namespace) tries to continue it and to kill it, which would take the host down. A
kill never reaches it. A continue does from the service's own session (SIGCONT crosses
uids within a session; review AU): the init had then run `sleep` as root, found on PATH,
so a learner able to write a PATH directory of an image host chose a root program. Now it
only stops itself again. The lab keeps running, and the teardown still ends the init.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.base import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import root_processes

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(str(tmp_path), prefix=runtime_prefix("q"))
    try:
        yield runtime
    finally:
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()


def _root_states(rt: LocalRuntime, lab_id: str) -> dict[int, tuple[str, str]]:
    """pid -> (command name, state) of the lab's processes running as root."""
    return {pid: (comm, state) for pid, (comm, state, _env) in root_processes(rt, lab_id).items()}


def _stopped_init(rt: LocalRuntime, lab_id: str) -> int:
    end = time.monotonic() + 30
    while True:
        stopped = [pid for pid, (comm, state) in _root_states(rt, lab_id).items()
                   if comm == "sh" and state == "T"]
        if stopped:
            (pid,) = stopped
            return pid
        assert time.monotonic() < end, "the init never stopped itself"
        time.sleep(0.05)


def test_the_lab_user_can_neither_wake_nor_kill_the_idle_init(rt: LocalRuntime) -> None:
    lab_id = "scn-" + secrets.token_hex(8)
    rt.create(LabSpec(lab_id, [SubnetSpec("lan", "10.209.0.0/24")], [
        HostSpec("box", networks=[("lan", None)], command="exec sleep 1000")]))
    init = _stopped_init(rt, lab_id)
    res = rt.exec(lab_id, "box", ["/bin/sh", "-c",
                                  "kill -s CONT -1; kill -s TERM -1; kill -9 -1; true"])
    assert res.exit_code == 0
    time.sleep(0.2)
    assert _root_states(rt, lab_id).get(init) == ("sh", "T")  # still there, still stopped
    assert rt.exec(lab_id, "box", ["/bin/echo", "still here"]).stdout == b"still here\n"
    assert [i.state for i in rt.list() if i.lab_id == lab_id] == ["running"]
    rt.destroy(lab_id)
    assert not os.path.exists(f"/proc/{init}")
    assert lab_id not in [i.lab_id for i in rt.list()]


def test_a_continue_from_the_services_session_only_stops_the_init_again(
        rt: LocalRuntime) -> None:
    lab_id = "scn-" + secrets.token_hex(8)
    # The service shares the init's session: its SIGCONT reaches the init (pid 2).
    rt.create(LabSpec(lab_id, [SubnetSpec("lan", "10.209.1.0/24")], [
        HostSpec("box", networks=[("lan", None)],
                 command="while :; do sleep 0.2; kill -s CONT 2 && echo sent >> /srv/sent; "
                         "done")]))
    init = _stopped_init(rt, lab_id)
    end = time.monotonic() + 30
    while b"sent" not in rt.exec(lab_id, "box", ["/bin/cat", "/srv/sent"]).stdout:
        assert time.monotonic() < end, "the service never sent its continue"
        time.sleep(0.1)
    while rt.exec(lab_id, "box", ["/bin/cat", "/srv/sent"]).stdout.count(b"sent") < 2:
        assert time.monotonic() < end, "the service sent its continue only once"
        time.sleep(0.1)  # several continues sent
    # Still the root shell, stopped again each time; no root program started by the wake.
    assert _root_states(rt, lab_id).get(init, ("", ""))[0] == "sh"
    assert [comm for comm, _state in _root_states(rt, lab_id).values()
            if comm not in ("sh", "bwrap")] == []
