"""What a supervised service's log says: its last words when it dies, for `forge up` to
report beside the exit code."""

from __future__ import annotations

import os
from pathlib import Path

# The end of a dead service's log read for its last words (a traceback ends with the error,
# a refused start with its reason), and at most this much of that line shown.
LAST_WORDS_READ = 4096
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
    lines = [line.strip() for line in tail.decode("utf-8", "replace").splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    shown = "".join(ch for ch in last if ch.isprintable())
    return shown if len(shown) <= LAST_WORDS_SHOWN else shown[:LAST_WORDS_SHOWN - 1] + "…"
