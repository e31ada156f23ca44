"""The sealed grader: what a check sees and who it runs as.

A check runs in a sandbox of its own that shares only the host's network namespace:

- its uid is the lab's grader uid, which no lab process has, with one capability
  (DAC_READ_SEARCH, to read the learner's files whatever their mode) and the lab's
  seccomp filter;
- its pid namespace is a child of the machine's, not of the host's, so no lab process
  can see it (nor its argv, environment or stdin) and it sees no lab process;
- its /home, /workspace and /srv are a read-only *snapshot* of the host's trees, taken
  by the platform (once the lab is sealed, one per host, at its first check, read by all
  of them: ``sealed_snapshot``): regular files and directories only, every file opened without
  following links and without blocking, size-capped. A FIFO, socket or device is left
  out (a check reading it finds no file); a symbolic link is kept only when it resolves,
  link by link inside the three trees, to a regular file, whose bytes are then copied
  (all links of a snapshot together within ``MAX_LINK_STEPS`` path steps: past them it is
  incomplete, and no check runs);
- expected values reach it on stdin (``Check.stdin``), never in argv or environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import stat
from dataclasses import dataclass, field

from forge import treepath
from forge.runtime.base import ExecResult, SpecError
from forge.runtime.local.bwrap_args import JOIN_SH, readonly_seed_args, setpriv_argv, system_args
from forge.runtime.local.execute import env_sh
from forge.runtime.local.host_dirs import HostPaths
from forge.runtime.local.tools import tool
from forge.runtime.plan import WRITABLE_DIRS

MAX_FILE_BYTES = 8 << 20
MAX_TOTAL_BYTES = 64 << 20
MAX_ENTRIES = 20_000
MAX_DEPTH = 32
# Path components walked following the trees' links, all links of a snapshot together.
# One link may take ~80,000 (40 targets of ~2,000 components each, ``treepath``): 16,000
# links to such a chain kept the orchestrator busy for half an hour at a seal, outside
# the lab's CPU quota, with its grading stuck. Ordinary links take a few steps each.
MAX_LINK_STEPS = 500_000
_TOPS = frozenset(d.lstrip("/") for d in WRITABLE_DIRS)
MAX_REPORTED = 50
GRADER_TMP_BYTES = 16 << 20
GRADER_CAPS = ["DAC_READ_SEARCH"]
# What a check's programs would otherwise take from the learner's files: HOME is the
# snapshot of the learner's /home, where a ~/.curlrc, ~/.digrc, ~/.wgetrc or a Python
# user-site .pth file would run or steer the check. None of them is read by a check.
# PYTHONSAFEPATH: `python3 -c`/`-m` would put the working directory (/workspace, the
# learner's) first on the import path, so a planted /workspace/json.py ran in the check.
CHECK_ENV = {"HOME": "/nonexistent", "XDG_CONFIG_HOME": "/nonexistent",
             "CURL_HOME": "/nonexistent", "PYTHONNOUSERSITE": "1", "PYTHONSAFEPATH": "1",
             "WGETRC": "/dev/null"}


def check_env(host_env: dict[str, str]) -> dict[str, str]:
    """A check's environment: the host's (and its template's), with nothing read from the
    learner's home (``CHECK_ENV`` wins over both)."""
    return {**host_env, **CHECK_ENV}


@dataclass
class Snapshot:
    """What a snapshot holds, and what it left out (in-lab path, reason)."""

    files: int = 0
    size: int = 0
    entries: int = 0
    left_out: list[tuple[str, str]] = field(default_factory=list)
    truncated: str | None = None  # why part of the trees is not in it (see truncate)
    link_steps: treepath.Budget = field(
        default_factory=lambda: treepath.Budget(MAX_LINK_STEPS))

    def leave_out(self, path: str, why: str) -> None:
        if len(self.left_out) < MAX_REPORTED:
            self.left_out.append((path, why))

    def truncate(self, path: str, why: str) -> None:
        """Part of a tree, or of a file's content, is not in the snapshot: a check on it
        could find absent what is there (an implant hidden behind 20,000 files, or padded
        past the file cap), so no check runs on it. (The caller records ``path`` as left
        out.)"""
        if self.truncated is None:
            self.truncated = f"{path}: {why}"


def take_snapshot(data_dir: str, dest: str) -> Snapshot:
    """Copy the host's answer trees (``data_dir``/home, workspace, srv) into ``dest``.

    Safe while lab processes still write there ("Check this task" on a live lab): every
    directory and file is opened with ``openat`` from a directory fd under ``data_dir``
    with O_NOFOLLOW (files also O_NONBLOCK) and checked with fstat, and a link is followed
    only by `treepath.open_file`, from the fd of ``data_dir`` itself; so a component the
    learner swaps for a link mid-snapshot is never followed out of the lab's tree.
    """
    snap = Snapshot()
    os.makedirs(dest, mode=0o700)
    root = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for tree in WRITABLE_DIRS:
            name = tree.lstrip("/")
            out = os.path.join(dest, name)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=root)
            except OSError:
                os.mkdir(out, 0o755)
                continue
            try:
                _copy_dir(fd, out, tree, root, snap, 0)
            finally:
                os.close(fd)
    finally:
        os.close(root)
    return snap


def _copy_meta(st: os.stat_result, path: str) -> None:
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(path, stat.S_IMODE(st.st_mode) & 0o1777)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_dir(fd: int, out: str, lab_path: str, root: int, snap: Snapshot,
              depth: int) -> None:
    os.mkdir(out, 0o700)
    for entry in sorted(os.scandir(fd), key=lambda e: e.name):
        child = posixpath.join(lab_path, entry.name)
        snap.entries += 1
        if snap.entries > MAX_ENTRIES:
            snap.leave_out(child, f"more than {MAX_ENTRIES} entries")
            snap.truncate(child, f"more than {MAX_ENTRIES} entries")
            break
        try:
            st = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        target = os.path.join(out, entry.name)
        if stat.S_ISDIR(st.st_mode):
            if depth >= MAX_DEPTH:
                snap.leave_out(child, f"deeper than {MAX_DEPTH} levels")
                snap.truncate(child, f"deeper than {MAX_DEPTH} levels")
                continue
            try:
                sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                              dir_fd=fd)
            except OSError:
                continue
            try:
                _copy_dir(sub, target, child, root, snap, depth + 1)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(fd, entry.name, target, child, snap)
        elif stat.S_ISLNK(st.st_mode):
            try:
                linked = open_in_trees(root, child, snap.link_steps)
            except treepath.BudgetSpent:
                why = f"links in the trees take more than {MAX_LINK_STEPS} steps to follow"
                _placeholder(target, child, why, snap)
                snap.truncate(child, why)
                continue
            if linked is None:
                _placeholder(target, child, "symbolic link that does not lead to a regular "
                             "file inside /home, /workspace or /srv", snap)
                continue
            _copy_open(linked, target, child, snap)
        else:
            _placeholder(target, child, "not a regular file (FIFO, socket or device)", snap)
    _copy_meta(os.fstat(fd), out)


def _placeholder(target: str, lab_path: str, why: str, snap: Snapshot) -> None:
    """Leave ``lab_path`` out, but keep its name: an empty file no one may read. A check
    that the learner removed something ("test ! -e", a script listing a directory) must
    not find absent a file the snapshot only skipped (larger than the cap, a FIFO, a link
    out of the trees): it exists, and its content reads as nothing."""
    snap.leave_out(lab_path, why)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0))


def _too_big(target: str, lab_path: str, why: str, snap: Snapshot) -> None:
    """A file whose content the snapshot cannot hold keeps its name. Under /home, where a
    login shell's dotfiles (and an implant in them) live, the snapshot is then incomplete
    and no check runs: padded past the cap, ~/.profile would read as clean. A large file
    a learner made in /workspace or /srv (a candidate list) only reads as empty there."""
    _placeholder(target, lab_path, why, snap)
    if lab_path.startswith("/home/"):
        snap.truncate(lab_path, why)


def _copy_file(dir_fd: int, name: str, target: str, lab_path: str, snap: Snapshot) -> None:
    try:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                      | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        _placeholder(target, lab_path, f"cannot be opened ({exc.strerror})", snap)
        return
    _copy_open(src, target, lab_path, snap)


def _copy_open(src: int, target: str, lab_path: str, snap: Snapshot) -> None:
    """Copy the open file ``src`` (closed here) to ``target`` if it is a regular file
    within the caps."""
    st = os.fstat(src)
    if not stat.S_ISREG(st.st_mode):
        os.close(src)
        _placeholder(target, lab_path, "not a regular file (a directory, FIFO, socket or "
                     "device)", snap)
        return
    with os.fdopen(src, "rb") as fh:
        if st.st_size > MAX_FILE_BYTES:
            _too_big(target, lab_path, f"larger than {MAX_FILE_BYTES} bytes", snap)
            return
        if snap.size + st.st_size > MAX_TOTAL_BYTES:
            # Not this file's size but what came before it (sparse or linked files cost
            # the lab's disk nothing): any small file after them, a template's /srv file
            # a check proves cleaned, would read as empty, so no check runs.
            why = f"the snapshot would exceed {MAX_TOTAL_BYTES} bytes"
            _placeholder(target, lab_path, why, snap)
            snap.truncate(lab_path, why)
            return
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        _too_big(target, lab_path, f"larger than {MAX_FILE_BYTES} bytes", snap)
        return
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    _copy_meta(st, target)
    snap.files += 1
    snap.size += len(data)


def open_in_trees(root: int, lab_path: str, budget: treepath.Budget | None = None) -> int | None:
    """An fd of whatever ``lab_path`` leads to inside the lab tree whose directory fd is
    ``root``, following links one component at a time by ``openat`` and never leaving
    /home, /workspace or /srv; None when it leads nowhere there (the caller checks that
    the fd is a regular file). ``treepath.BudgetSpent`` when ``budget`` ran out on the way
    (whether it leads somewhere is then unknown)."""
    try:
        return treepath.open_file(root, treepath.split(lab_path), tops=_TOPS, budget=budget)
    except treepath.BudgetSpent:
        raise
    except (OSError, treepath.TreePathError):
        return None


NOT_RUN_EXIT = 125  # a check refused before it ran (an incomplete snapshot)


def not_run(why: str) -> ExecResult:
    """The failed outcome of a check that was not run, saying why on stderr."""
    err = f"check not run: the snapshot of the answer trees is incomplete ({why})\n".encode()
    empty = hashlib.sha256(b"").hexdigest()
    return ExecResult(exit_code=NOT_RUN_EXIT, stdout=b"", stderr=err, stdout_sha256=empty,
                      stderr_sha256=hashlib.sha256(err).hexdigest(), stdout_size=0,
                      stderr_size=len(err), truncated=False, duration_s=0.0, timed_out=False)


SEALED_TRUNCATED = "truncated"  # in a kept snapshot's top, beside (not in) its trees


def sealed_snapshot(data_dir: str, grader_dir: str, host: str) -> tuple[str, str | None]:
    """The snapshot every check of ``host`` reads once its lab is sealed, and why it is
    incomplete (None: it is not). Taken at the host's first check after the seal and kept
    to teardown: nothing still running then (a service, or what a service started for the
    learner) can change the answers one check reads after another check ran, say after
    watching where it connected. Two first checks at once each take one; the first kept
    wins and the other is removed."""
    final = os.path.join(grader_dir, f"sealed-{host}")
    if not os.path.isdir(final):
        taking = os.path.join(grader_dir, f"taking-{host}-{os.urandom(8).hex()}")
        try:
            truncated = take_snapshot(data_dir, taking).truncated
            if truncated is not None:
                with open(os.path.join(taking, SEALED_TRUNCATED), "x",
                          encoding="utf-8") as fh:
                    fh.write(truncated)
            os.rename(taking, final)
        except BaseException:  # another first check kept its own, or this one failed
            remove_snapshot(taking)
            if not os.path.isdir(final):
                raise
    try:
        with open(os.path.join(final, SEALED_TRUNCATED), encoding="utf-8") as fh:
            return final, fh.read()
    except FileNotFoundError:
        return final, None


def drop_sealed_snapshots(grader_dir: str) -> None:
    """Remove the kept snapshots (and any being taken) of every host: each seal starts
    its grading's snapshots afresh."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(grader_dir):
            if entry.name.startswith(("sealed-", "taking-")):
                remove_snapshot(entry.path)


def remove_snapshot(dest: str) -> None:
    """Delete a snapshot (never following links out of it)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(dest)


def grader_argv(
    *, hostname: str, paths: HostPaths, snapshot: str, rootfs: str,
    uid: int, env_names: list[str], argv: list[str], seccomp_fd: int, args_fd: int,
    image: bool = False, reset: tuple[str, ...] = (),
) -> list[str]:
    """The command line of one check: join its cgroup (JOIN_SH) and start a fresh
    bubblewrap sandbox as the grader, from a thread already in the host's network
    namespace (and, like a host's sandbox, in a copy of the base mount namespace holding
    only the lab's disk: ``launch.start_in_lab``; bwrap's start costs the same at any
    number of live labs); its environment (``env_names`` of it) and working directory
    are read from ``args_fd`` (``execute.enter_options``: a command line is readable by
    every local user; the root steps never run with it, ``execute.env_sh``). ``reset``
    (``service_signals.service_prefix``) gives the check default signal dispositions,
    whatever the orchestrator's own start ignored."""
    if argv[0].startswith("-"):  # the renaming shell's exec would take it for an option
        raise SpecError("argv[0]", "a program name must not start with '-'")
    cmd = ["/bin/sh", "-c", JOIN_SH, "fg-join", tool("bwrap"), "--unshare-pid",
           "--unshare-ipc", "--unshare-uts", "--hostname", hostname, "--new-session",
           "--die-with-parent", *system_args(rootfs, paths.etc_dir, image),
           "--size", str(GRADER_TMP_BYTES), "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108
    for tree in WRITABLE_DIRS:
        cmd += ["--ro-bind", os.path.join(snapshot, tree.lstrip("/")), tree]
    cmd += readonly_seed_args(paths.host_dir)
    cmd += ["--remount-ro", "/", "--cap-drop", "ALL"]
    for cap in ("SETUID", "SETGID", "SETPCAP", *GRADER_CAPS):
        cmd += ["--cap-add", f"CAP_{cap}"]
    cmd += ["--seccomp", str(seccomp_fd), "--args", str(args_fd), "--",
            *setpriv_argv(uid, GRADER_CAPS), *reset, *env_sh(env_names), *argv]
    return cmd
