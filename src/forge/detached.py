"""Helper programs that a stop signal to the service's process group cannot kill.

`forge up` stops a service by signalling its whole process group, and the service then
drains: builds under way finish. A helper started with
``start_new_session=True`` leaves that group only when it calls ``setsid``, and
CPython's child sets every handled signal back to its default *before* that call, so a
stop signal sent in between kills the helper: ``mmdebstrap --version`` died that way
mid-launch and labs failed as "could not be created" (the rotation drill, stop 41).

``run_detached`` starts a short helper (``ip``, ``nft``, a tool's version) with the stop
signals blocked in the calling thread: the child is born with them blocked, one sent
before its ``setsid`` stays pending instead of killing it, and a helper that runs to
completion never needs them. Lab processes must not inherit a blocked signal, so their
starts guard themselves differently (``forge.runtime.local.sandbox``).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
# A lab start that a stop signal caught (one that cannot be started blocked) is made again,
# this many times in all: a stop sends one signal, an impatient operator a few.
RESTART_ATTEMPTS = 5


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block the stop signals in the calling thread (only: the process still gets them,
    on another thread) for the body."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def run_detached(argv: list[str], *, input: str | None = None, timeout: float,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True, check=False)`` in a session
    of its own, out of reach of a stop signal from its very start (see the module doc).
    On timeout the helper is killed and ``TimeoutExpired`` raised.

    Only for a program that keeps the signal mask it was given (``ip``, ``nft``,
    ``nsenter``, ``dpkg``, ``apt-cache``, ``mmdebstrap``), never a shell script: a shell
    clears the mask, and a stop signal left pending then kills it after all."""
    proc: subprocess.Popen[str] | None = None
    try:
        with stop_signals_blocked():
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                start_new_session=True)
    except BaseException:
        # A handler run as the mask comes back (the CLI's KeyboardInterrupt) raised after
        # the helper started: it is not left running with its pipes open.
        if proc is not None:
            with proc:
                proc.kill()
        raise
    with proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
