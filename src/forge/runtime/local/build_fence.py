"""A lab's create and a destroy of it exclude each other across runtime instances.

Within one orchestrator a per-scenario lock keeps them apart, but another process (an
operator's ``forge runtime destroy``, a second orchestrator on the same node) has its own
runtime instance: its destroy tore down a lab mid-create, and the create then either failed
with a raw ``FileNotFoundError`` or, when it was claiming a warm-pool lab, finished and left
the lab running although the destroy had said it was gone.

A create holds its lab's fence shared for the whole build; a destroy takes it exclusive, so
it waits for the build to finish and then removes the whole lab. Fences are ``flock`` locks
on a fixed set of files under the state directory (``.fence/000``…), picked by a hash of
the lab's name: the set never grows, nothing is ever unlinked (no stale-inode races), and
creates of different labs never wait for each other (all shared). A destroy of one lab may
wait for a create of another lab on the same file: a build's time at most. A destroy made
by a building thread (a failed pool claim removing what it took) waits for no build: it
holds a fence already, and waiting for another while holding one could deadlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterator

log = logging.getLogger("forge.runtime.local.build_fence")

STRIPES = 256
DESTROY_WAIT_S = 120.0  # far beyond any build; past it the destroy goes ahead as before
_POLL_S = 0.02


class BuildFence:
    """The fences of one state directory."""

    def __init__(self, state_dir: str) -> None:
        self.dir = os.path.join(state_dir, ".fence")
        self._mine = threading.local()  # the stripes this thread's builds hold

    def _held(self) -> dict[int, int]:
        held: dict[int, int] | None = getattr(self._mine, "held", None)
        if held is None:
            held = self._mine.held = {}
        return held

    def _open(self, stripe: int) -> int:
        path = os.path.join(self.dir, f"{stripe:03d}")
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            return os.open(path, flags, 0o600)
        except FileNotFoundError:
            # The state directory first, owner-only as a create makes it: a fence is often
            # the first thing of it made, and makedirs gives the folders it makes on the
            # way (the state directory itself) the umask's mode, 0755.
            os.makedirs(os.path.dirname(self.dir), mode=0o700, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.dir, 0o700)
            return os.open(path, flags, 0o600)

    def holds_any(self) -> bool:
        """Does this thread hold a build fence (is it inside a create)?"""
        return any(self._held().values())

    @contextlib.contextmanager
    def building(self, stem: str) -> Iterator[None]:
        """Held (shared) while lab ``stem`` is built; waits for a destroy under way."""
        stripe, held = _stripe(stem), self._held()
        fd = self._open(stripe)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            held[stripe] = held.get(stripe, 0) + 1
            try:
                yield
            finally:
                held[stripe] -= 1
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def destroying(self, stem: str) -> Iterator[None]:
        """Held (exclusive) while lab ``stem`` is destroyed, once no build holds it (at
        most DESTROY_WAIT_S; then the destroy goes ahead, and says so)."""
        stripe = _stripe(stem)
        if self.holds_any():
            # Made by a build of this thread (a failed pool claim removing what it took,
            # built already): nothing to wait for; and a thread holding one fence must not
            # wait for another, or two such builds, each destroying on the other's stripe,
            # wait for each other the whole DESTROY_WAIT_S.
            yield
            return
        fd = self._open(stripe)
        try:
            deadline = time.monotonic() + DESTROY_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        log.warning("lab %s: a create still holds its fence after %.0f s; "
                                    "destroying it anyway", stem, DESTROY_WAIT_S)
                        break
                    time.sleep(_POLL_S)
            yield
        finally:
            os.close(fd)


def _stripe(stem: str) -> int:
    return zlib.crc32(stem.encode()) % STRIPES


__all__ = ["DESTROY_WAIT_S", "STRIPES", "BuildFence"]
