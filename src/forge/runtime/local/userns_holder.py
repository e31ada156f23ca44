"""A process holding a new user and network namespace for a lab host, while the runtime
sets them up.

The processes come from ``userns_helper``, a single-threaded program started on first use
(one per runtime process, started again if it died) that forks one per request: see that
module for why and what each does. ``holder(owner)`` yields a path to the holder's
``/proc`` directory, valid for the body (the holder ends when the body leaves).

One helper serves every thread. A request that finds it gone starts a new one; a request
it does not answer in time stops the one it was sent to (only that one: a helper started
meanwhile by another thread is left alone), so a dead or hung helper fails only the
requests it had taken.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

from forge.detached import stop_signals_blocked
from forge.runtime.local import userns_helper

HOLDER_TIMEOUT_S = 10.0
PYTHON = sys.executable
_REPLY_MAX = 512

_lock = threading.Lock()
_helper: tuple[subprocess.Popen[bytes], socket.socket] | None = None


def _start() -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start the helper program with one end of a socket pair (the other, close-on-exec,
    is ours: when this process ends, so does the helper)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        with stop_signals_blocked():
            proc = subprocess.Popen(
                [PYTHON, "-I", "-S", userns_helper.__file__, str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), start_new_session=True, env={}, cwd="/")
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return proc, ours


def _stop(helper: tuple[subprocess.Popen[bytes], socket.socket]) -> None:
    proc, control = helper
    control.close()
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


def _request(owner: int, channel: socket.socket) -> subprocess.Popen[bytes]:
    """Send the helper one request (starting it, or starting it again once when it is
    gone or its queue is full: a helper that stopped reading); returns the helper sent
    to."""
    global _helper
    message = userns_helper.REQUEST.pack(owner)
    with _lock:
        for attempt in (1, 2):
            if _helper is None or _helper[0].poll() is not None:
                if _helper is not None:
                    _stop(_helper)
                _helper = None
                _helper = _start()
            try:
                socket.send_fds(_helper[1], [message], [channel.fileno()],
                                socket.MSG_DONTWAIT)
                return _helper[0]
            except OSError:
                _stop(_helper)
                _helper = None
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _stop_if_current(proc: subprocess.Popen[bytes]) -> None:
    """End the helper ``proc`` that did not answer in time, if it is still the current
    one: the next request starts a new one."""
    global _helper
    with _lock:
        if _helper is not None and _helper[0] is proc:
            _stop(_helper)
            _helper = None


def _failure(why: str) -> OSError:
    return OSError(errno.EPERM, f"cannot make a user namespace for a host: {why}")


def _alive(channel: socket.socket) -> bool:
    """Whether the holder at the other end of ``channel`` still runs (its end is open)."""
    try:
        return channel.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def holder(owner: int) -> Iterator[str]:
    """A path to the ``/proc`` directory of a process in a new user namespace owned by
    uid ``owner`` and a network namespace of that user namespace, valid for the body: it
    names that process only (never another that reuses its pid). OSError (EPERM, naming
    what was refused) when they could not be made."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc_fd = -1
    try:
        try:
            helper = _request(owner, theirs)
        except OSError as exc:
            raise _failure(f"the helper did not take the request ({exc})") from None
        finally:
            theirs.close()
        ours.settimeout(HOLDER_TIMEOUT_S)
        try:
            reply = ours.recv(_REPLY_MAX)
        except TimeoutError:
            _stop_if_current(helper)
            raise _failure("no answer") from None
        if reply.startswith(b"err "):
            raise _failure(reply.split(b" ", 2)[-1].decode(errors="replace"))
        if not reply.startswith(b"ok "):
            raise _failure("the helper or its process ended")  # the next request restarts it
        try:
            pid = int(reply[3:])
        except ValueError:
            raise _failure("a malformed answer") from None
        try:
            proc_fd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            proc_fd = -1
        # Still running once its directory is open: the directory is its, not that of a
        # process given its pid after it ended.
        ours.setblocking(False)
        if proc_fd < 0 or not _alive(ours):
            raise _failure("its process ended before it was set up")
        yield f"/proc/self/fd/{proc_fd}"
    finally:
        if proc_fd >= 0:
            os.close(proc_fd)
        ours.close()  # the holder ends
