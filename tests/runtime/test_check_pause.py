"""A check that ended in time is not a timeout because the service was paused.

A grading check's outcome is read by a loop in the orchestrator (`execute.run_started`).
When that process is paused past the check's deadline (SIGSTOP, a stalled VM, a swap
storm) while the command itself finishes in time, the loop used to see the deadline first
and sign a correct answer as `timed_out` (FAIL). Here the command itself stops the
process running the loop, prints its answer, and has it continued 3 s later, past its
1.5 s timeout: a real process, paused for real."""

from __future__ import annotations

import json
import subprocess
import sys

PAUSED = ("kill -STOP $PPID; echo answer; "
          "(sleep 3; kill -CONT $PPID) >/dev/null 2>&1 &")
SLOW = "sleep 3; echo never"

RUN = """
import json, sys
from forge.runtime.local.execute import run_started
result, _ = run_started(["/bin/sh", "-c", sys.argv[1]], {"PATH": "/usr/bin:/bin"},
                        timeout=1.5, stdin=None, max_output=4096, kill_tree=lambda: None)
print(json.dumps({"timed_out": result.timed_out, "exit_code": result.exit_code,
                  "stdout": result.stdout.decode()}))
"""


def _run(command: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", RUN, command], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    body: dict[str, object] = json.loads(done.stdout)
    return body


def test_a_command_that_ended_while_the_reader_was_paused_is_its_result() -> None:
    assert _run(PAUSED) == {"timed_out": False, "exit_code": 0, "stdout": "answer\n"}


def test_a_command_still_running_at_its_deadline_is_a_timeout() -> None:
    body = _run(SLOW)
    assert body["timed_out"] is True and body["stdout"] == ""
