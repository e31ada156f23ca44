"""A learner's busy detached shell must not burn the orchestrator's CPU (issue 17).

Attack: in the lab terminal, `yes` (or `cat /dev/zero | od`), then close the tab. The node's
terminal session outlives its sockets (so a reconnect reattaches), and it kept reading the
shell's output into its scrollback, copying the whole 256 KiB buffer on every chunk and
writing each chunk to the recording: about as fast as the lab could print, in the
orchestrator's process, outside the lab's cgroup CPU quota, for as long as the session lived.
Now a session nobody is attached to reads at most 256 KiB more, then stops reading its PTY:
the kernel's buffer fills and the printer blocks inside the lab until a socket attaches.
(The node's CPU before and after: `bench/terminal_detached.py`, `make bench`.)

Real spawn_service + orchestrator, nats-server, SQLite and the local lab runtime (the `lab`
fixture of test_terminal_cap).
"""

from __future__ import annotations

import time

import pytest

from forge.services.orchestrator.terminal_output import RESET, SCROLLBACK_BYTES

from ..services.test_terminal_sessions import attach, read_until
from .test_terminal_cap import Lab, lab

__all__ = ["lab"]  # the module-scoped platform fixture, shared with test_terminal_cap
pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]


def session_facts(lab: Lab, sid: str) -> tuple[bool, int, int]:
    """(paused, bytes read from the shell, scrollback size) of the lab's one session."""
    async def facts() -> tuple[bool, int, int]:
        [session] = lab.orch.terminal_sessions.of_lab(sid)
        return session.paused, session.output_bytes, session.scrollback.size
    result: tuple[bool, int, int] = lab.in_loop(facts)
    return result


def test_a_detached_shell_printing_forever_waits_in_the_lab_and_still_answers(
        lab: Lab) -> None:
    """`yes` in a closed tab: the node reads a bounded amount more (its scrollback at its cap),
    then stops reading, so the printer blocks inside the lab instead of the node copying
    output nobody sees; reattaching shows the latest output and the shell still answers."""
    headers = lab.learner("yuri")
    sid = lab.spawn_running(headers)
    ws, _frame, _ = attach(lab, sid, headers)
    ws.send(b"sh -c 'echo $$ > /workspace/printer; exec yes flood-line'\n")
    read_until(ws, b"flood-line\r\nflood-line")
    ws.close()
    lab.wait_attached(sid, 0)
    deadline = time.monotonic() + 30
    while not session_facts(lab, sid)[0]:  # polling, no time assertion
        assert time.monotonic() < deadline, "the detached session never stopped reading"
        time.sleep(0.05)
    _, read, kept = session_facts(lab, sid)
    assert kept == SCROLLBACK_BYTES
    time.sleep(0.3)  # the printer goes on trying; nothing more is read
    assert session_facts(lab, sid) == (True, read, kept)

    again, frame, replay = attach(lab, sid, headers)
    with again:
        assert frame["new"] is False and 0 < frame["replayed"] <= SCROLLBACK_BYTES
        assert replay.startswith(RESET) and b"flood-line\r\n" in replay
        assert read_until(again, b"flood-line\r\n")  # reading resumed: latest output flows
        # The printer is stopped from inside the lab (SIGKILL: in the full suite a ^C did not
        # reach it, see the stop note), then the same shell answers.
        stopped = lab.runtime.exec(sid, "learner", ["sh", "-c", "kill -9 $(cat /workspace/printer)"])
        assert stopped.exit_code == 0, stopped
        again.send(b"echo after-flood-$((6*7))\n")
        read_until(again, b"after-flood-42")


def test_a_paused_shell_that_ends_frees_its_terminal_at_once(lab: Lab) -> None:
    """The shell of a paused session (detached flood) is killed inside the lab: the session
    used to wait only for a socket, so it kept its slot (counted against the plan's
    terminals) until the idle timeout and a reattach got "shell ended". Now it notices the
    shell ended, closes, frees the slot, and the next attach opens a new shell."""
    headers = lab.learner("zora")
    sid = lab.spawn_running(headers)
    ws, _frame, _ = attach(lab, sid, headers)
    ws.send(b"echo $$ > /workspace/flood-shell; yes flood-line\n")
    read_until(ws, b"flood-line\r\nflood-line")
    ws.close()
    lab.wait_attached(sid, 0)
    deadline = time.monotonic() + 30
    while not session_facts(lab, sid)[0]:  # polling, no time assertion
        assert time.monotonic() < deadline, "the detached session never stopped reading"
        time.sleep(0.05)
    assert lab.held(sid) == 1
    killed = lab.runtime.exec(sid, "learner",
                              ["sh", "-c", "kill -9 $(cat /workspace/flood-shell)"])
    assert killed.exit_code == 0, killed
    lab.wait_held(sid, 0)  # freed long before the plan's idle timeout
    assert lab.in_loop(lambda: _live(lab, sid)) == 0

    again, frame, _ = attach(lab, sid, headers)
    with again:
        assert frame["new"] is True
        again.send(b"echo fresh-$((6*7))\n")
        read_until(again, b"fresh-42")


async def _live(lab: Lab, sid: str) -> int:
    return len(lab.orch.terminal_sessions.of_lab(sid))
