"""A process holding a new user and network namespace for a lab host, while the runtime
sets them up.

The processes come from ``userns_helper``, a single-threaded program started on first use
(one per runtime process, started again if it died) that forks one per request: see that
module for why and what each does. ``holder(owner)`` yields the holder's pid, alive for
the body; it ends when the body leaves.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

from forge.detached import stop_signals_blocked
from forge.runtime.local import userns_helper

HOLDER_TIMEOUT_S = 10.0
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
                [sys.executable, "-I", "-S", userns_helper.__file__, str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), start_new_session=True, env={})
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


def _request(owner: int, channel: socket.socket) -> None:
    """Send the helper one request (starting it, or starting it again once when it is
    gone)."""
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
                socket.send_fds(_helper[1], [message], [channel.fileno()])
                return
            except OSError:
                _stop(_helper)
                _helper = None
                if attempt == 2:
                    raise


def _restart_later() -> None:
    """End a helper that did not answer in time: the next request starts a new one."""
    global _helper
    with _lock:
        if _helper is not None:
            _stop(_helper)
            _helper = None


def _failure(why: str) -> OSError:
    return OSError(errno.EPERM, f"cannot make a user namespace for a host: {why}")


@contextlib.contextmanager
def holder(owner: int) -> Iterator[int]:
    """The pid of a process in a new user namespace owned by uid ``owner`` and a network
    namespace of that user namespace, alive for the body; OSError (EPERM, naming what was
    refused) when they could not be made."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        try:
            _request(owner, theirs)
        except OSError as exc:
            raise _failure(f"the helper did not take the request ({exc})") from None
        finally:
            theirs.close()
        ready, _, _ = select.select([ours], [], [], HOLDER_TIMEOUT_S)
        reply = ours.recv(_REPLY_MAX) if ready else b""
        if not reply.startswith(b"ok "):
            if reply.startswith(b"err "):
                raise _failure(reply.split(b" ", 2)[-1].decode(errors="replace"))
            _restart_later()
            raise _failure("no answer")
        try:
            pid = int(reply[3:])
        except ValueError:
            raise _failure("a malformed answer") from None
        yield pid
    finally:
        ours.close()  # the holder ends
