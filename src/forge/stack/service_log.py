"""What a supervised service's log says: its last words when it dies, for `forge up` to
report beside the exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path

# The end of a dead service's log read for its last words (a traceback ends with the error,
# a refused start with its reason; a JSON record with its traceback runs to kilobytes), and
# at most this much of what they say shown.
LAST_WORDS_READ = 1 << 20
LAST_WORDS_SHOWN = 300


def last_words(log_path: Path, since: int = 0) -> str:
    """The last non-blank line `log_path` got after byte `since` (from its last
    LAST_WORDS_READ bytes; cut to LAST_WORDS_SHOWN characters, control characters dropped);
    "" when there is none. An operator told only "exited with code 3" had to open the log
    to learn the store was down."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(since, fh.tell() - LAST_WORDS_READ))
            tail = fh.read(LAST_WORDS_READ)
    except OSError:
        return ""
    lines = [line.strip() for line in tail.decode("utf-8", "replace").split("\n")]
    last = _said(next((line for line in reversed(lines) if line), ""))
    shown = "".join(ch for ch in last if ch.isprintable())
    return shown if len(shown) <= LAST_WORDS_SHOWN else shown[:LAST_WORDS_SHOWN - 1] + "…"


def _said(line: str) -> str:
    """What a log line says: a service's JSON record as its level and message (and the
    type of its error), not the first characters of its time stamp and logger name; any
    other line as it is."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("msg"), str):
        error = record.get("error_type")
        return f"{record.get('level', 'log')}: {record['msg']}" + (
            f" [{error}]" if isinstance(error, str) else "")
    return line
