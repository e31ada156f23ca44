"""Judge one check's outcome against its `expect` block; every expectation named must hold."""

from __future__ import annotations

import re

from forge.runtime.base import ExecResult
from forge.templates.models import Expect


def judge(expect: Expect, result: ExecResult) -> tuple[bool, list[str]]:
    """(passed, reasons for failure). A timed-out check never passes."""
    reasons: list[str] = []
    if result.timed_out:
        reasons.append("timed out")
    if expect.exit_code is not None and result.exit_code != expect.exit_code:
        reasons.append(f"exit code {result.exit_code}, expected {expect.exit_code}")
    stdout, stderr = result.stdout_text, result.stderr_text
    if expect.stdout_contains is not None and expect.stdout_contains not in stdout:
        reasons.append("stdout lacks the expected text")
    if expect.stdout_regex is not None and re.search(expect.stdout_regex, stdout) is None:
        reasons.append("stdout does not match the expected pattern")
    if expect.stderr_contains is not None and expect.stderr_contains not in stderr:
        reasons.append("stderr lacks the expected text")
    return not reasons, reasons
