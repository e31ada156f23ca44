"""Runtime prefixes no other test of the same run holds.

A runtime lists every lab under its prefix; two runtimes alive at once with the same prefix
(two tests on different xdist workers that drew the same random hex) see each other's labs
as foreign, and a teardown may destroy a lab another test still uses. Each prefix handed
out is claimed by creating a file exclusively in a directory of this test run.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path


def runtime_prefix(letter: str, length: int = 5) -> str:
    """``letter`` and random hex, ``length`` characters in all, claimed for this test run."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "single")
    claims = Path(tempfile.gettempdir()) / "forge-test-prefixes" / run
    claims.mkdir(parents=True, exist_ok=True)
    for _ in range(1000):
        prefix = letter + secrets.token_hex(length)[:length - 1]
        try:
            os.close(os.open(claims / prefix, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        return prefix
    raise AssertionError(f"no free runtime prefix starting with {letter!r}")
