"""The one judging rule for a check's recorded outcome: grader, scoreboard and verifier share it.

A check passes only when every expectation its template names provably holds for the output
the grader captured. Judging works on recorded facts only (exit code, timed out, the captured
bytes of stdout/stderr and whether that capture is the complete output), so the scoreboard and
the offline verifier reach the same answer as the grader from what was stored. What cannot be
proven fails: a timed-out check, text not found in a truncated capture, a pattern over a
truncated capture (a match in a prefix need not be one in the whole), an empty expectation.

Standard library only: the offline verifier imports this module.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EXPECT_KEYS = ("exit_code", "stdout_contains", "stdout_regex", "stderr_contains")


class ExpectationError(ValueError):
    """A recorded `expect` block is malformed; the message names the field."""


@dataclass(frozen=True)
class Expectation:
    """What a check's result must show (the template's `expect`, values already rendered)."""

    exit_code: int | None = None
    stdout_contains: str | None = None
    stdout_regex: str | None = None
    stderr_contains: str | None = None

    @classmethod
    def from_document(cls, doc: object, where: str = "expect") -> Expectation:
        """Parse a JSON `expect` object, refusing unknown keys and wrongly typed values."""
        if not isinstance(doc, Mapping):
            raise ExpectationError(f"{where}: not an object")
        unknown = sorted(str(k) for k in doc if k not in EXPECT_KEYS)
        if unknown:
            raise ExpectationError(f"{where}: unknown keys {unknown}")
        code = doc.get("exit_code")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise ExpectationError(f"{where}.exit_code: not an integer")
        texts: dict[str, str | None] = {}
        for key in EXPECT_KEYS[1:]:
            value = doc.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ExpectationError(f"{where}.{key}: not a non-empty string")
            texts[key] = value
        return cls(code, texts["stdout_contains"], texts["stdout_regex"],
                   texts["stderr_contains"])

    def to_document(self) -> dict[str, Any]:
        """The JSON form: only the expectations that are named."""
        values = (self.exit_code, self.stdout_contains, self.stdout_regex, self.stderr_contains)
        return {k: v for k, v in zip(EXPECT_KEYS, values, strict=True) if v is not None}


@dataclass(frozen=True)
class Capture:
    """One captured stream: the bytes kept and whether they are the whole output."""

    data: bytes
    complete: bool

    @classmethod
    def of(cls, data: bytes, size: int, sha256: str) -> Capture:
        """Complete only when `data` has the full output's size and sha256."""
        digest = hashlib.sha256(data).hexdigest()
        return cls(data, len(data) == size and hmac.compare_digest(digest, sha256))

    @property
    def text(self) -> str:
        """The bytes as UTF-8, invalid bytes replaced (what every judge searches)."""
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True)
class Recorded:
    """The recorded outcome of one check run."""

    exit_code: int | None
    stdout: Capture
    stderr: Capture
    timed_out: bool


@dataclass(frozen=True)
class Judgement:
    """Pass/fail and, when failed, every reason."""

    passed: bool
    reasons: tuple[str, ...]


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _contains(name: str, needle: str, capture: Capture) -> str | None:
    if needle in capture.text:
        return None
    if not capture.complete:
        return f"{name} lacks the expected text in its captured part (output truncated)"
    return f"{name} lacks the expected text"


def judge_recorded(expect: Expectation, rec: Recorded) -> Judgement:
    """Judge a recorded outcome against `expect`; see the module docstring for the rule."""
    reasons: list[str] = []
    if expect.to_document() == {}:
        reasons.append("no expectation is named")
    if rec.timed_out:
        reasons.append("timed out")
    if expect.exit_code is not None and rec.exit_code != expect.exit_code:
        reasons.append(f"exit code {rec.exit_code}, expected {expect.exit_code}")
    if expect.stdout_contains is not None:
        reasons.append(_contains("stdout", expect.stdout_contains, rec.stdout) or "")
    if expect.stdout_regex is not None:
        pattern = _compiled(expect.stdout_regex)
        if pattern is None:
            reasons.append("the expected pattern is not a valid regular expression")
        elif not rec.stdout.complete:
            reasons.append("stdout is truncated: the expected pattern cannot be judged")
        elif pattern.search(rec.stdout.text) is None:
            reasons.append("stdout does not match the expected pattern")
    if expect.stderr_contains is not None:
        reasons.append(_contains("stderr", expect.stderr_contains, rec.stderr) or "")
    kept = tuple(r for r in reasons if r)
    return Judgement(not kept, kept)
