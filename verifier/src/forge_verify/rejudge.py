"""Judge every check of a verdict again from its bundle: criteria.json + the recorded outputs.

score.json states, per check, where it ran, what it ran and whether it passed; the bundle holds
the rendered criteria (`criteria.json`) and each check's captured stdout/stderr. Every check is
judged again with the shared rule (forge_verify.judging) and must agree with score.json, as
must the criteria's ids, descriptions, weights, containers and commands. The scoreboard runs
this before it signs; the offline verifier runs it only on signed files whose origin a trusted
key proves, since it runs the bundle's patterns and Python's regular expressions have no time
bound (a pattern from anyone could run for ever).

Standard library only (plus this package's stdlib-only modules): the offline verifier imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forge_verify.aids import aids_problems
from forge_verify.canonical import CanonicalJSONError, loads
from forge_verify.judging import Capture, ExpectationError, Recorded, judge_recorded
from forge_verify.rules import CRITERIA_MEMBER, CheckRule, CriterionRule, parse_criteria_document

NOT_REJUDGED = (f"bundle has no {CRITERIA_MEMBER} (made before checks were judged twice): "
                "the checks' pass/fail were not judged again")


def _capture(meta: object, members: Mapping[str, bytes]) -> Capture:
    """The stream's bundled bytes; incomplete when anything about it is missing or odd."""
    if not isinstance(meta, Mapping):
        return Capture(b"", False)
    data = members.get(str(meta.get("evidence")))
    size, sha = meta.get("size"), meta.get("sha256")
    if data is None or isinstance(size, bool) or not isinstance(size, int) or not isinstance(
            sha, str):
        return Capture(data or b"", False)
    return Capture.of(data, size, sha)


def _recorded(check: Mapping[str, Any], members: Mapping[str, bytes]) -> Recorded:
    code = check.get("exit_code")
    exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    return Recorded(exit_code, _capture(check.get("stdout"), members),
                    _capture(check.get("stderr"), members), check.get("timed_out") is not False)


def _check(rule: CheckRule, check: object, where: str, members: Mapping[str, bytes]
           ) -> str | None:
    if not isinstance(check, Mapping):
        return f"{where}: not an object in score.json"
    if check.get("container") != rule.container or check.get("command") != list(rule.command):
        return f"{where}: container or command differ from {CRITERIA_MEMBER}"
    judged = judge_recorded(rule.expect, _recorded(check, members))
    stated = check.get("passed")
    if stated is judged.passed:
        return None
    verdict = "pass" if judged.passed else "fail (" + "; ".join(judged.reasons) + ")"
    return (f"{where}: score.json records passed={stated!r}, but its recorded outputs judged "
            f"against {CRITERIA_MEMBER} {verdict}")


def _criterion(rule: CriterionRule, crit: object, i: int, members: Mapping[str, bytes]
               ) -> list[str]:
    where = f"criteria[{i}] ({rule.id})"
    if not isinstance(crit, Mapping):
        return [f"{where}: not an object in score.json"]
    if (crit.get("id"), crit.get("description"), crit.get("weight")) != (
            rule.id, rule.description, rule.weight):
        return [f"{where}: id, description or weight differ from {CRITERIA_MEMBER}"]
    checks = crit.get("checks")
    if not isinstance(checks, list) or len(checks) != len(rule.checks):
        return [f"{where}: score.json lists other checks than {CRITERIA_MEMBER}"]
    problems = [_check(k, c, f"{rule.id}[{j}]", members)
                for j, (k, c) in enumerate(zip(rule.checks, checks, strict=True))]
    return [p for p in problems if p]


def rejudge_bundle(doc: Mapping[str, Any], members: Mapping[str, bytes]) -> list[str] | None:
    """Every disagreement between score.json and the re-judged checks or the recorded hints
    (empty: consistent); None when the bundle has no criteria.json to judge from."""
    raw = members.get(CRITERIA_MEMBER)
    if raw is None:
        return aids_problems(doc, members) or None
    try:
        rules = parse_criteria_document(loads(raw))
    except (CanonicalJSONError, ExpectationError) as exc:
        return [f"{CRITERIA_MEMBER}: {exc}"]
    criteria = doc.get("criteria")
    if not isinstance(criteria, list) or len(criteria) != len(rules):
        return [f"score.json lists other criteria than {CRITERIA_MEMBER}"]
    problems = aids_problems(doc, members)
    for i, (rule, crit) in enumerate(zip(rules, criteria, strict=True)):
        problems.extend(_criterion(rule, crit, i, members))
    return problems
