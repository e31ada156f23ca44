"""Runtime prefixes no other test of the same run holds.

A runtime lists every lab under its prefix; two runtimes alive at once with the same prefix
(two tests on different xdist workers that drew the same random hex) see each other's labs
as foreign, and a teardown may destroy a lab another test still uses. Each prefix handed
out is claimed by creating a file exclusively in a directory of this test run; a stack of
several lab nodes claims every node's prefix, since node 2's is derived from the base and
may equal a prefix another test drew (or the base itself: ``fgab2`` → ``fgab2``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from forge.stack.topology import TopologyError, node_prefixes


def _claims() -> Path:
    # One directory per run: without xdist, per process (a shared "single" directory kept
    # every earlier run's claims, and after a few hundred runs no stem was left to draw).
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"single-{os.getpid()}"
    claims = Path(tempfile.gettempdir()) / "forge-test-prefixes" / run
    claims.mkdir(parents=True, exist_ok=True)
    return claims


def _claim_all(prefixes: list[str]) -> bool:
    """Claim every one of ``prefixes``, or none of them (False) when one is taken."""
    claims = _claims()
    taken: list[Path] = []
    for prefix in prefixes:
        try:
            os.close(os.open(claims / prefix, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            for path in taken:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            return False
        taken.append(claims / prefix)
    return True


def runtime_prefix(letter: str, length: int = 5) -> str:
    """``letter`` and random hex, ``length`` characters in all, claimed for this test run."""
    for _ in range(1000):
        prefix = letter + secrets.token_hex(length)[:length - 1]
        if _claim_all([prefix]):
            return prefix
    raise AssertionError(f"no free runtime prefix starting with {letter!r}")


def stack_prefix(letter: str, nodes: int) -> str:
    """A 5-character FORGE_RUNTIME_PREFIX for a `forge up --nodes <nodes>` whose every
    node's prefix (as `forge up` derives it) is distinct and claimed for this test run."""
    for _ in range(1000):
        base = letter + secrets.token_hex(2)
        try:
            prefixes = node_prefixes(base, nodes)
        except TopologyError:  # node 2's prefix is the base itself: `forge up` refuses it
            continue
        if _claim_all(prefixes):
            return base
    raise AssertionError(f"no free stack prefix starting with {letter!r}")


def digit_prefix(letter: str) -> str:
    """A 3-character prefix whose ten one-digit extensions (``p0`` … ``p9``: one runtime
    per lab node, each node's prefix the stem and its number) are all claimed."""
    for _ in range(1000):
        stem = letter + secrets.token_hex(1)
        if _claim_all([f"{stem}{digit}" for digit in range(10)]):
            return stem
    raise AssertionError(f"no free digit prefix starting with {letter!r}")
