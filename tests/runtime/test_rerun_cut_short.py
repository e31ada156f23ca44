"""Which ends of a grading check's started process run the check again (``rerun_cut_short``).

Only a stop signal (TERM, INT, HUP) ending the started process itself: the check's own
command runs in a pid namespace below it and cannot send one there. A check whose command
was killed (bwrap reports 128+n), a timeout (SIGKILL) and a normal exit are results.
"""

from __future__ import annotations

import signal

import pytest

from forge.detached import RESTART_ATTEMPTS
from forge.runtime.base import ExecResult, RuntimeFault
from forge.runtime.local.execute import rerun_cut_short


def result(code: int) -> ExecResult:
    return ExecResult(exit_code=code, stdout=b"", stderr=b"", stdout_sha256="",
                      stderr_sha256="", stdout_size=0, stderr_size=0, truncated=False,
                      duration_s=0.0, timed_out=False)


@pytest.mark.parametrize("status", [0, 1, 143, -signal.SIGKILL, -signal.SIGSEGV])
def test_an_end_of_its_own_is_the_result(status: int) -> None:
    calls = []

    def run() -> tuple[ExecResult, int]:
        calls.append(status)
        return result(128 - status if status < 0 else status), status

    assert rerun_cut_short(run).exit_code == (128 - status if status < 0 else status)
    assert calls == [status]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_start_a_stop_signal_cut_short_is_run_again(sig: signal.Signals) -> None:
    statuses = [-sig, -sig, 0]

    def run() -> tuple[ExecResult, int]:
        status = statuses.pop(0)
        return result(128 - status if status < 0 else status), status

    assert rerun_cut_short(run).exit_code == 0
    assert statuses == []


def test_cut_short_every_time_raises_rather_than_give_an_unearned_fail() -> None:
    calls = []

    def run() -> tuple[ExecResult, int]:
        calls.append(1)
        return result(143), -signal.SIGTERM

    with pytest.raises(RuntimeFault, match="killed by SIGTERM 5 times"):
        rerun_cut_short(run)
    assert len(calls) == RESTART_ATTEMPTS == 5
