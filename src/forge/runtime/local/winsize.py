"""A PTY's window size, and keeping the latest resize against a shell's stale write-back.

The race: before every prompt, readline (bash's line editor) reads the terminal's size and
writes the same value back (``TIOCGWINSZ`` then ``TIOCSWINSZ``, its ``set_winsize``). A
resize from the node that lands between the two is undone by the older size, and nothing
sets it again: the shell, ``stty size`` and full-screen programs keep the old size while the
browser shows the new one. The window is a few microseconds on an idle machine, but a lab
host runs under a CPU quota, so under load the shell can be held between the two calls for
a whole quota period (a reattaching browser tab resizes exactly then, after a command).

`SizeKeeper` remembers the sizes it replaced. While the terminal shows one of them again
(a write-back of a size read before the resize), the latest resize is set again; the PTY
layer checks at every read and write, so the write-back is undone as soon as the shell's
next output (its prompt) or the next keystrokes pass. Any other size is a deliberate change
(a learner's ``stty rows 50``): from then on the terminal keeps it until the next resize.
The guard lasts `GUARD_S` after a resize (a write-back comes within one CPU-quota period of
it; later, a replaced size is the learner's own `stty`, e.g. back to 24x80, and is kept)
and re-applies at most `REASSERTS` times, so a learner who sets an old size on purpose gets
it in the end.
"""

from __future__ import annotations

import fcntl
import struct
import termios
import time

from forge.runtime.base import SpecError

Size = tuple[int, int]  # (rows, cols)
REASSERTS = 16  # re-applications of one resize at most
REMEMBERED = 8  # replaced sizes remembered at most (older ones are forgotten)
GUARD_S = 3.0  # how long after a resize a replaced size counts as a stale write-back


def set_size(fd: int, rows: int, cols: int) -> None:
    """Set the terminal's size (the foreground process group gets SIGWINCH)."""
    if not (0 < rows <= 1000 and 0 < cols <= 1000):
        raise SpecError("rows/cols", "terminal size must be between 1 and 1000")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> Size:
    """The terminal's size as its programs see it."""
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    return rows, cols


class SizeKeeper:
    """The latest resize of one PTY, set again while a replaced size shows up (see module).

    Not thread-safe: the caller holds the PTY's lock around every call.
    """

    def __init__(self, guard_s: float = GUARD_S) -> None:
        self.wanted: Size | None = None
        self._replaced: list[Size] = []
        self._left = 0
        self._guard_s = guard_s
        self._until = 0.0

    def resize(self, fd: int, rows: int, cols: int) -> None:
        """Set the size, remembering the one it replaces."""
        before = get_size(fd)
        set_size(fd, rows, cols)
        self.wanted = (rows, cols)
        if before not in self._replaced:
            self._replaced.append(before)
        self._replaced = [s for s in self._replaced if s != self.wanted][-REMEMBERED:]
        self._left = REASSERTS
        self._until = time.monotonic() + self._guard_s

    def check(self, fd: int) -> bool:
        """Undo a stale write-back if the terminal shows one now; True when it set the size
        again. One ioctl while guarding (`GUARD_S` after a resize), nothing after."""
        if self.wanted is None or not self._replaced:
            return False
        if time.monotonic() > self._until:
            self._replaced.clear()  # the window of a write-back is over: stop guarding
            return False
        now = get_size(fd)
        if now == self.wanted:
            return False
        if now not in self._replaced or self._left <= 0:
            self._replaced.clear()  # a deliberate size: keep it, stop guarding
            return False
        self._left -= 1
        set_size(fd, *self.wanted)
        return True
