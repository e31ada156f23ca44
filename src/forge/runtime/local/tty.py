"""Interactive terminals into lab hosts: a PTY running a login shell inside the host."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import threading
from collections.abc import Callable

from forge.runtime.base import TerminalClosed, TtySession
from forge.runtime.local.winsize import SizeKeeper, set_size

SHELL_ARGV = ["setsid", "-c", "/bin/bash", "-l"]


class LocalTty(TtySession):
    """A PTY whose slave side runs ``bash -l`` in the host (as the session's ctty), read and
    written as an async byte stream over the non-blocking master.

    Nothing is buffered here: ``read`` returns what one ``read(2)`` gives (at most
    ``max_bytes``) and ``write`` waits for the PTY to take the data, so memory is bounded
    by the caller's chunks. A resize is kept against the shell's own write-back of an older
    size (readline's, before each prompt; see `winsize`), checked at each read and write.
    ``close()`` (from any thread) wakes pending reads (they return
    ``b""``), hangs up the terminal and kills every process the session started (through
    ``kill_tree``), then reaps the wrapper.
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
            set_size(slave, rows, cols)
            self._proc = subprocess.Popen(
                argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                start_new_session=True, pass_fds=pass_fds,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._size = SizeKeeper()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = set()

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Wait for output; ``b""`` once the shell ended or the session was closed."""
        while True:
            with self._lock:
                if self._closed:
                    return b""
                try:
                    data = os.read(self._master, max_bytes)
                except BlockingIOError:
                    pass
                except OSError:  # EIO: the slave side is gone
                    return b""
                else:
                    self._keep_size_locked()  # output: a prompt may follow a write-back
                    return data
            await self._ready(write=False)

    async def write(self, data: bytes) -> None:
        """Send all of ``data`` to the shell, waiting while its input queue is full."""
        view = memoryview(data)
        while view:
            with self._lock:
                if self._closed:
                    raise TerminalClosed("terminal is closed")
                try:
                    self._keep_size_locked()  # before the shell acts on these keystrokes
                    view = view[os.write(self._master, view):]
                except BlockingIOError:
                    pass
                except OSError as exc:  # EIO: the slave side is gone
                    raise TerminalClosed("terminal is closed") from exc
            if view:
                await self._ready(write=True)

    async def _ready(self, *, write: bool) -> None:
        """Wait until the PTY is readable (or writable), or the session is closed.

        The descriptor is registered with the loop only while waiting, and closed only
        once no waiter holds it, so a descriptor number the kernel reuses after close is
        never watched in its place.
        """
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        waiter = (loop, wake)
        with self._lock:
            if self._closed:
                return
            fd = self._master
            (loop.add_writer if write else loop.add_reader)(fd, wake)
            self._waiters.add(waiter)
        try:
            await woken
        finally:
            with self._lock:
                (loop.remove_writer if write else loop.remove_reader)(fd)
                self._waiters.discard(waiter)
                if self._closed and not self._waiters:
                    self._close_master()

    def resize(self, rows: int, cols: int) -> None:
        """Change the terminal size (the shell gets SIGWINCH); kept against a stale
        write-back of the size it replaces (`winsize.SizeKeeper`)."""
        with self._lock:
            if self._closed or self._master < 0:
                return
            self._size.resize(self._master, rows, cols)

    def _keep_size_locked(self) -> None:
        """Set the latest resize again if the shell wrote an older size back (caller holds
        the lock; the master is open)."""
        with contextlib.suppress(OSError):  # a hung-up terminal: the read/write says so
            self._size.check(self._master)

    def close(self) -> None:
        """Hang up, kill the session's processes, reap them. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for loop, wake in list(self._waiters):
                try:
                    loop.call_soon_threadsafe(wake)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    self._waiters.discard((loop, wake))
            if not self._waiters:
                self._close_master()
        self._kill_tree()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        self._on_close(self)

    def _close_master(self) -> None:
        """Close the PTY master once (caller holds the lock)."""
        if self._master >= 0:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = -1

    @property
    def closed(self) -> bool:
        """True once closed (by the caller or because the lab was destroyed), or once the
        terminal hung up: nothing in the lab holds it any more (its shell ended), which a
        caller that stopped reading can only learn this way. Call `close` still."""
        with self._lock:
            return self._closed or self._hung_up_locked()

    def _hung_up_locked(self) -> bool:
        """The PTY master reports a hang-up (caller holds the lock); never blocks."""
        if self._master < 0:
            return False
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        return any(events & select.POLLHUP for _, events in poller.poll(0))
