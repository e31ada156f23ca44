"""Waiting for a condition in a test: one bounded poll instead of a copy in every file."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(check: Callable[[], object], what: str, timeout_s: float = 60.0,
          interval_s: float = 0.05) -> None:
    """Poll `check` every `interval_s` until it is truthy; fail naming `what` when it is
    not within `timeout_s` (a generous bound against a hang, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(interval_s)
