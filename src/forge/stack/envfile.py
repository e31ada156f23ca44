"""Read a `.env` file (KEY=value lines, # comments, optional quotes, optional `export`)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from forge_verify.files import InputRefused, read_bounded_text

# Far above any real env file (a few KiB); the file is read whole, so a device (/dev/zero),
# a FIFO or a huge file must be refused before it is (it once filled the machine's memory),
# and a process substitution's pipe is read up to this many bytes.
MAX_ENV_FILE_BYTES = 1024 * 1024
_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


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


def read_env_file(path: Path) -> dict[str, str]:
    """Variables of the file; values keep everything after `=` (quotes stripped)."""
    if _process_pipe(path):
        text = _read_pipe(path)
    else:
        try:
            text = read_bounded_text(path, MAX_ENV_FILE_BYTES)
        except InputRefused as exc:  # not a regular file, too large, unreadable, not UTF-8
            raise EnvFileError(f"{path}: {exc.reason}") from None
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
    return values
