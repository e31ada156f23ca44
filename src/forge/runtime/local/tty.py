"""Interactive terminals into lab hosts: a PTY running a login shell inside the host."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
import termios
import threading
from collections.abc import Callable

from forge.runtime.base import SpecError, TtySession

SHELL_ARGV = ["setsid", "-c", "/bin/bash", "-l"]


class LocalTty(TtySession):
    """A PTY whose slave side runs ``bash -l`` in the host (as the session's ctty).

    ``close()`` hangs up the terminal and kills every process the session started
    (through ``kill_tree``), then reaps the wrapper.
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        rows: int,
        cols: int,
        kill_tree: Callable[[], None],
        on_close: Callable[[LocalTty], None],
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self._kill_tree = kill_tree
        self._on_close = on_close
        self._lock = threading.Lock()
        self._closed = False
        master, slave = os.openpty()
        try:
            _set_size(slave, rows, cols)
            self._proc = subprocess.Popen(
                argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                start_new_session=True, pass_fds=pass_fds,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._master = master

    def fileno(self) -> int:
        """The PTY master (readable when the shell printed something)."""
        return self._master

    def read(self, size: int = 65536) -> bytes:
        """Read output (blocks until some is available); ``b""`` once the shell ended."""
        if self._closed:
            return b""
        try:
            return os.read(self._master, size)
        except OSError:  # EIO: the slave side is gone
            return b""

    def write(self, data: bytes) -> int:
        """Send input to the shell."""
        if self._closed:
            raise OSError("terminal is closed")
        return os.write(self._master, data)

    def resize(self, rows: int, cols: int) -> None:
        """Change the terminal size (the shell gets SIGWINCH)."""
        if self._closed:
            return
        _set_size(self._master, rows, cols)

    def close(self) -> None:
        """Hang up, kill the session's processes, reap them. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            os.close(self._master)
        self._kill_tree()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        self._on_close(self)

    @property
    def closed(self) -> bool:
        """True once closed (by the caller or because the lab was destroyed)."""
        return self._closed


def _set_size(fd: int, rows: int, cols: int) -> None:
    if not (0 < rows <= 1000 and 0 < cols <= 1000):
        raise SpecError("rows/cols", "terminal size must be between 1 and 1000")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
