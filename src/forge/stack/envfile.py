"""Read a `.env` file (KEY=value lines, # comments, optional quotes, optional `export`)."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from forge.config.db_url import has_password
from forge.config.secrets import NATS_PASSWORD_VARS, REQUIRED_SECRETS, ROTATION_SUFFIXES
from forge.config.trusted_file import swappable_by_others
from forge_verify.files import InputRefused, read_bounded_text

# Far above any real env file (a few KiB); the file is read whole, so a device (/dev/zero),
# a FIFO or a huge file must be refused before it is (it once filled the machine's memory),
# and a process substitution's pipe is read up to this many bytes.
MAX_ENV_FILE_BYTES = 1024 * 1024
_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
# The variables whose value is a secret (the HMAC secrets, OPERATOR_TOKEN, NATS passwords and
# their rotation values): a file setting one must be readable by its owner only.
SECRET_VARS = frozenset(f"{name}{suffix}" for name in (*REQUIRED_SECRETS,
                                                       *NATS_PASSWORD_VARS.values())
                        for suffix in ROTATION_SUFFIXES)
# A URL with a password in it (`FORGE_DB_URL=postgresql://forge:PASSWORD@db/forge`, a
# `NATS_URL` list with `user:pass@`): its variable is a secret too, whatever its name.
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")


class EnvFileError(ValueError):
    """A line of the env file cannot be read; the message names the line number."""


def _process_pipe(path: Path) -> bool:
    """Whether `path` is a shell's process substitution (`--env-file <(sops -d …)`): a
    /dev/fd link to an anonymous pipe, whose writer runs already. A FIFO in the file
    system (`mkfifo`) is not: nobody may ever write it."""
    try:
        return os.readlink(path).startswith("pipe:") and stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _read_pipe(path: Path) -> str:
    """The text a process-substitution pipe gives until its end, at most the cap."""
    with open(path, "rb") as pipe:
        data = pipe.read(MAX_ENV_FILE_BYTES + 1)
    if len(data) > MAX_ENV_FILE_BYTES:
        raise EnvFileError(f"{path}: larger than {MAX_ENV_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _read_file(path: Path) -> tuple[str, os.stat_result]:
    """The text of the file at ``path`` and the status of that very file: it is opened once
    and read through that descriptor, so a path switched meanwhile (a symlink of another
    user's flipped to their own file for the read alone) cannot pass one file's check with
    another's values, as two stat() calls of the path around the read let it."""
    fd: int | None = None
    with contextlib.suppress(OSError):  # read_bounded_text below names why (missing…)
        if stat.S_ISREG(os.stat(path).st_mode):  # no device is opened (opening one can act)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if fd is None:  # not a regular file, missing, unreadable: read_bounded_text says so
            read_bounded_text(path, MAX_ENV_FILE_BYTES)
            raise EnvFileError(f"{path}: replaced while being read; try again")
        try:
            opened = os.fstat(fd)
            return read_bounded_text(f"/proc/self/fd/{fd}", MAX_ENV_FILE_BYTES), opened
        finally:
            os.close(fd)
    except InputRefused as exc:  # not a regular file, too large, unreadable, not UTF-8
        raise EnvFileError(f"{path}: {exc.reason}") from None


def _has_url_password(value: str) -> bool:
    """Whether ``value`` (one URL, or several comma-separated) carries a password: also one
    the pattern misses that the store reads as one, with a ``/`` in it (base64) or given as
    the ``?password=`` option."""
    return any(_URL_PASSWORD.match(part.strip()) or _parsed_password(part.strip())
               for part in value.split(","))


def _parsed_password(part: str) -> bool:
    try:
        return has_password(make_url(part))
    except (ArgumentError, ValueError):  # not a URL (or not one SQLAlchemy reads)
        return False


def _refuse_unsafe(path: Path, after: os.stat_result, values: dict[str, str]) -> None:
    """EnvFileError when another local user could have chosen the file's values (its owner
    is neither this user nor root, others may write it, or it is looked up in a folder
    another user may change, where they could put a link to another file in its place) or
    can read a secret it sets (``after``: the status of the file read). Its values are
    never named."""
    me, mode = os.geteuid(), stat.S_IMODE(after.st_mode)
    # Its group, when it is this user's own (or root's), is no other user: also for a file
    # of root's (`root:forge 0640`, made by configuration management for a `forge up` run
    # as the user forge), whose only fix offered, `chmod 600`, would leave it unreadable.
    own_group = after.st_uid in (me, 0) and after.st_gid in (os.getegid(), 0)
    others = 0o007 if own_group else 0o077
    fix = f"if it is yours, run `chown {me}:{os.getegid()} {path} && chmod 600 {path}`"
    if after.st_uid not in (me, 0):
        raise EnvFileError(f"{path}: owned by uid {after.st_uid} (mode {mode:o}), not by uid "
                           f"{me}: that user could have chosen its values; {fix}")
    if mode & others & 0o022:
        raise EnvFileError(f"{path}: writable by other users (owner uid {after.st_uid}, mode "
                           f"{mode:o}): they could have chosen its values; {fix}")
    swappable = swappable_by_others(path)
    if swappable is not None:
        raise EnvFileError(f"{path}: {swappable}")
    secrets = sorted(name for name, value in values.items()
                     if (name in SECRET_VARS and value) or _has_url_password(value))
    if secrets and mode & others & 0o044:
        raise EnvFileError(f"{path}: sets {', '.join(secrets)} but is readable by other users "
                           f"(owner uid {after.st_uid}, mode {mode:o}); run `chmod 600 {path}`")


def read_env_file(path: Path) -> dict[str, str]:
    """Variables of the file; values keep everything after `=` (quotes stripped). A file
    (not a process substitution's pipe) another user could have chosen the values of, or
    could read a secret of, is refused (EnvFileError)."""
    opened: os.stat_result | None = None
    if _process_pipe(path):
        text = _read_pipe(path)
    else:
        text, opened = _read_file(path)
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise EnvFileError(f"{path}:{number}: expected KEY=value")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    if opened is not None:
        _refuse_unsafe(path, opened, values)
    return values
