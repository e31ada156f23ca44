"""Read a `.env` file (KEY=value lines, # comments, optional quotes, optional `export`)."""

from __future__ import annotations

import re
from pathlib import Path

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


class EnvFileError(ValueError):
    """A line of the env file cannot be read; the message names the line number."""


def read_env_file(path: Path) -> dict[str, str]:
    """Variables of the file; values keep everything after `=` (quotes stripped)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
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
