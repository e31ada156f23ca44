"""Paths inside a directory tree read as the tree's own processes read them.

A lab host's root, an image being built and a lab's writable directories are trees on the
machine that hold links written by someone else (a package, a build script, the learner).
Read from the machine, ``etc -> /`` in such a tree points at the machine's own ``/``; every
path the platform writes or reads there is therefore resolved here with chroot semantics:
an absolute link target starts again at the tree's root, ``..`` stops there, and at most
``MAX_LINKS`` links are followed (the kernel's own limit for one lookup).

`walk` resolves a path to its components; its callers choose what a missing component
means (`create`: make it a directory) and which top-level directories a path may use
(`tops`). `walk` hands back names, so it suits trees nobody else writes at the time; a tree
a running lab may change is read with `open_file`, which walks directory fds instead.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_LINKS = 40


class TreePathError(ValueError):
    """A path that cannot be resolved inside the tree: a link loop, a file used as a
    directory, or a top-level directory outside the allowed ones."""


class Budget:
    """Steps `open_file` may take, shared by every call given it: one per path component
    walked (``..`` and the components of each link target included). One lookup may take
    up to ``MAX_LINKS`` targets of ~2,000 components each (~80,000 steps), so a tree of
    many links to a chain of long targets costs that much per link: a caller that follows
    links someone else wrote (a lab's trees) bounds the total."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.left = steps


class BudgetSpent(TreePathError):
    """A walk needed more steps than its `Budget` had left."""


def split(path: str) -> list[str]:
    """The components of ``path`` without empty ones and ``.``."""
    return [p for p in path.split("/") if p not in ("", ".")]


def walk(root: str | os.PathLike[str], parts: list[str], *, create: bool = False,
         tops: frozenset[str] | None = None) -> tuple[list[str], list[str]]:
    """Follow ``parts`` inside ``root``, every link included (the last component's too).

    Returns (resolved, rest): ``resolved`` are real components under ``root`` (no links),
    ``rest`` the components from the first missing one on (empty with ``create``, which
    makes missing directories 0755). Raises TreePathError on a link loop, a non-directory
    in the middle, or (with ``tops``) a path whose first component is not in ``tops``;
    OSError when the tree cannot be read.
    """
    pending = split("/".join(parts))
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        if tops is not None and not done and part not in tops:
            raise TreePathError(f"/{part} is outside {', '.join(sorted(tops))}")
        here = os.path.join(root, *done, part)
        try:
            info = os.lstat(here)
        except FileNotFoundError:
            if not create:
                return done, [part, *pending]
            os.mkdir(here, 0o755)
            os.chmod(here, 0o755)  # noqa: S103 - like /usr: the umask must not narrow it
            done.append(part)
            continue
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            if hops > MAX_LINKS:
                raise TreePathError("too many symbolic links")
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            pending = split(target) + pending
            continue
        if pending and not stat.S_ISDIR(info.st_mode):
            raise TreePathError(f"/{'/'.join([*done, part])} is not a directory")
        done.append(part)
    return done, []


def open_file(root_fd: int, parts: list[str], *, tops: frozenset[str] | None = None,
              budget: Budget | None = None) -> int:
    """Open what ``parts`` leads to inside the directory ``root_fd``, never outside it.

    The same chroot semantics as `walk`, but for a tree someone may change while it is
    read: every component is opened with ``openat`` from the directory fd of the one
    before, with O_NOFOLLOW, so a directory swapped for a link mid-walk is met as a link
    (read and followed here, from ``root_fd`` when absolute) and never by the kernel; no
    string path is handed to ``open`` after the walk. Returns a new fd opened O_RDONLY |
    O_NONBLOCK | O_NOCTTY (the caller checks its type with fstat and closes it). Raises
    TreePathError like `walk`, also when the path ends on a directory; BudgetSpent once
    ``budget`` has no step left; OSError when a component is missing or cannot be opened.
    """
    pending = split("/".join(parts))[::-1]  # reversed: the next component is the last
    stack: list[int] = []  # directory fds below root_fd, owned here
    hops = 0
    try:
        while pending:
            if budget is not None:
                budget.left -= 1
                if budget.left < 0:
                    raise BudgetSpent(f"more than {budget.steps} path steps")
            part = pending.pop()
            if part == "..":
                if stack:
                    os.close(stack.pop())
                continue
            if tops is not None and not stack and part not in tops:
                raise TreePathError(f"/{part} is outside {', '.join(sorted(tops))}")
            here = stack[-1] if stack else root_fd
            last = os.O_NONBLOCK | os.O_NOCTTY
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (
                os.O_DIRECTORY if pending else last)
            try:
                fd = os.open(part, flags, dir_fd=here)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                try:
                    target = os.readlink(part, dir_fd=here)
                except OSError:
                    raise TreePathError(f"{part} is not a directory") from None
                hops += 1
                if hops > MAX_LINKS:
                    raise TreePathError("too many symbolic links") from None
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                pending.extend(reversed(split(target)))
                continue
            if not pending:
                return fd
            stack.append(fd)
        raise TreePathError("the path names a directory")
    finally:
        for fd in stack:
            os.close(fd)
