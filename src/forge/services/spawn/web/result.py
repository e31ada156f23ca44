"""What the result section shows: the scoreboard's score and verification, put in words.

The score is weight earned of weight total (score.json's `passed`/`total` count criteria,
not weight). A failed criterion gets a short reason from its recorded check results (timed
out, exit code, a service that did not answer, output that differs) and never the check's
command, stdin or output: those can hold the expected value, i.e. the answer. The signature
status is worded on its own ("Authentic" / "Not authentic"), apart from pass/fail.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from forge_verify.credential import is_passing

# curl's exit codes for "no answer": cannot resolve, refused, timed out, empty reply, recv error.
_NO_ANSWER_CODES = frozenset({6, 7, 28, 52, 56})
_NETWORK_TOOL = re.compile(r"\b(?:curl|wget|nc|ncat|socat)\b|/dev/tcp/")
VERIFY_STANDALONE = "frostgate-forge-verify"
MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class CriterionView:
    """One criterion as the learner sees it."""

    id: str
    description: str
    weight: str
    passed: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ResultView:
    """The result section's facts, ready for the template (all plain text; escaped there)."""

    earned: str
    total: str
    score: str
    criteria: tuple[CriterionView, ...]
    authentic: bool
    authenticity: str
    problems: tuple[str, ...]
    key_id: str
    completed_at: str | None
    hints_used: str | None = None  # e.g. "2 hints revealed: minus 10 %"
    percent: str = "-"  # the score as people read it: "75 %"
    all_passed: bool = False
    outcome: str = ""  # "Passed: all 3 tasks done" / "Not passed yet: 1 of 3 tasks done"


def _number(value: float) -> str:
    """A weight as people write it: 2, 1.5 (no trailing .0)."""
    return f"{value:g}"


def _weight(crit: dict[str, Any]) -> float:
    value = crit.get("weight")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return max(0.0, float(value))


def _mentions_network_tool(command: object) -> bool:
    if not isinstance(command, list):
        return False
    return _NETWORK_TOOL.search(" ".join(str(part) for part in command)) is not None


def check_reason(check: dict[str, Any]) -> str:
    """Why one recorded check failed, in words that never quote its command or output."""
    code = check.get("exit_code")
    if check.get("timed_out") is True:
        return "the check timed out: nothing answered in time"
    if isinstance(code, bool) or not isinstance(code, int):
        return "the check could not run"
    if code in _NO_ANSWER_CODES and _mentions_network_tool(check.get("command")):
        return "a service did not answer"
    if code != 0:
        return f"what the check looks for is not there yet (it ended with exit code {code})"
    stdout = check.get("stdout")
    if isinstance(stdout, dict) and stdout.get("truncated") is True:
        return "the output was too long to be judged"
    return "the result differs from what the task asks for"


def _reasons(crit: dict[str, Any]) -> tuple[str, ...]:
    checks = [c for c in crit.get("checks") or [] if isinstance(c, dict)]
    failed = [c for c in checks if c.get("passed") is not True]
    if not failed:
        return ("no check result was recorded",) if not checks else ()
    found: list[str] = []
    for check in failed:
        reason = check_reason(check)
        if len(checks) > 1:
            reason = f"check {checks.index(check) + 1} of {len(checks)}: {reason}"
        if reason not in found:
            found.append(reason)
    return tuple(found)


def _criterion(crit: dict[str, Any]) -> CriterionView:
    passed = crit.get("passed") is True
    return CriterionView(
        id=str(crit.get("id", "")), description=str(crit.get("description", "")),
        weight=_number(_weight(crit)), passed=passed,
        reasons=() if passed else _reasons(crit))


def _authenticity(verification: dict[str, Any]) -> tuple[bool, str, tuple[str, ...]]:
    """("Authentic: signed by key …" | "Not authentic: …", and every reason given)."""
    problems = tuple(
        str(r.get("message", r.get("code", "")))[:MAX_REASON_CHARS]
        for r in verification.get("reasons") or [] if isinstance(r, dict))
    key_id = str(verification.get("key_id") or "")
    if verification.get("ok") is True:
        signer = f"signed by key {key_id}" if key_id else "signed by the platform's key"
        return True, f"Authentic: {signer}", problems
    first = problems[0] if problems else "the signature could not be checked"
    return False, f"Not authentic: {first}", problems


def _hints_used(score: dict[str, Any]) -> str | None:
    """How many hints the score charged and their total cost, or None without hints."""
    hints = [h for h in score.get("hints") or [] if isinstance(h, dict)]
    if not hints:
        return None
    cost = math.fsum(h["cost"] for h in hints if isinstance(h.get("cost"), int | float))
    plural = "hint" if len(hints) == 1 else "hints"
    if cost <= 0:
        return f"{len(hints)} free {plural} revealed: nothing taken off the score"
    return f"{len(hints)} {plural} revealed: \N{MINUS SIGN}{round(cost * 100, 1):g} % of the score"


def _outcome(score: dict[str, Any], criteria: tuple[CriterionView, ...],
             authentic: bool) -> tuple[bool, str]:
    """Whether the lab is passed (the credential's rule, ``is_passing``), in one line; a
    result that does not verify says so first (its words are not the platform's)."""
    passed = is_passing(score)
    done, count = sum(c.passed for c in criteria), len(criteria)
    if passed:
        words = "Passed: " + ("the task is done" if count == 1 else f"all {count} tasks done")
    else:
        words = f"Not passed: {done} of {count} task{'' if count == 1 else 's'} done"
    return passed, words if authentic else f"Unverified result ({words.lower()})"


def result_view(body: dict[str, Any]) -> ResultView:
    """The scoreboard's `GET /v1/scores/{id}` answer as the result section shows it."""
    found = body.get("score")
    score: dict[str, Any] = found if isinstance(found, dict) else {}
    raw = [c for c in score.get("criteria") or [] if isinstance(c, dict)]
    criteria = tuple(_criterion(c) for c in raw)
    earned = math.fsum(_weight(c) for c in raw if c.get("passed") is True)
    total = math.fsum(_weight(c) for c in raw)
    verification = body.get("verification")
    authentic, words, problems = _authenticity(
        verification if isinstance(verification, dict) else {})
    value = score.get("score")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        shown, percent = f"{value:.2f}", f"{round(value * 100, 1):g} %"
    else:
        shown = percent = "-"
    all_passed, outcome = _outcome(score, criteria, authentic)
    key_id = verification.get("key_id") if isinstance(verification, dict) else None
    return ResultView(earned=_number(earned), total=_number(total), score=shown,
                      criteria=criteria, authentic=authentic, authenticity=words,
                      problems=problems, key_id=str(key_id or ""),
                      completed_at=str(score["completed_at"]) if score.get("completed_at")
                      else None, hints_used=_hints_used(score), percent=percent,
                      all_passed=all_passed, outcome=outcome)
