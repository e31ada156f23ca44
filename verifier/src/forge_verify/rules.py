"""A lab's rendered success criteria as plain data: what each check runs where, and expects.

The scoreboard builds these rules from the template rendered with the scenario's variables and
stores them in the evidence bundle as `criteria.json` (canonical JSON), so the offline verifier
can judge every check again without YAML, pydantic or the template registry.

Standard library only: the offline verifier imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from forge_verify.judging import Expectation, ExpectationError

CRITERIA_FORMAT = "forge.criteria/v1"
CRITERIA_MEMBER = "criteria.json"


@dataclass(frozen=True)
class CheckRule:
    """One check of a criterion: host, command and expectation, as rendered for the lab."""

    container: str
    command: tuple[str, ...]
    expect: Expectation


@dataclass(frozen=True)
class CriterionRule:
    """One success criterion with its checks, in template order."""

    id: str
    description: str
    weight: float
    checks: tuple[CheckRule, ...]


def criteria_document(rules: Sequence[CriterionRule]) -> dict[str, Any]:
    """The `criteria.json` document (a plain dict ready for canonical JSON)."""
    return {
        "format": CRITERIA_FORMAT,
        "criteria": [
            {"id": c.id, "description": c.description, "weight": c.weight,
             "checks": [{"index": i, "container": k.container, "command": list(k.command),
                         "expect": k.expect.to_document()} for i, k in enumerate(c.checks)]}
            for c in rules
        ],
    }


def _check(raw: object, where: str, index: int) -> CheckRule:
    if not isinstance(raw, Mapping):
        raise ExpectationError(f"{where}: not an object")
    container, command = raw.get("container"), raw.get("command")
    if raw.get("index") != index:
        raise ExpectationError(f"{where}.index: expected {index}")
    if not isinstance(container, str) or not container:
        raise ExpectationError(f"{where}.container: not a non-empty string")
    if not isinstance(command, list) or not command or not all(
            isinstance(a, str) for a in command):
        raise ExpectationError(f"{where}.command: not a non-empty list of strings")
    return CheckRule(container, tuple(command),
                     Expectation.from_document(raw.get("expect"), f"{where}.expect"))


def parse_criteria_document(doc: object) -> tuple[CriterionRule, ...]:
    """Rules from a `criteria.json` document; ExpectationError names the bad field."""
    if not isinstance(doc, Mapping) or doc.get("format") != CRITERIA_FORMAT:
        raise ExpectationError(f"criteria: not a {CRITERIA_FORMAT} document")
    raw_criteria = doc.get("criteria")
    if not isinstance(raw_criteria, list) or not raw_criteria:
        raise ExpectationError("criteria: missing or empty")
    rules: list[CriterionRule] = []
    for i, raw in enumerate(raw_criteria):
        where = f"criteria[{i}]"
        if not isinstance(raw, Mapping):
            raise ExpectationError(f"{where}: not an object")
        cid, desc, weight, checks = (raw.get("id"), raw.get("description"), raw.get("weight"),
                                     raw.get("checks"))
        if not isinstance(cid, str) or not cid or not isinstance(desc, str):
            raise ExpectationError(f"{where}: id and description must be strings")
        if (isinstance(weight, bool) or not isinstance(weight, int | float)
                or not math.isfinite(weight) or weight <= 0):
            raise ExpectationError(f"{where}.weight: not a positive number")
        if not isinstance(checks, list) or not checks:
            raise ExpectationError(f"{where}.checks: missing or empty")
        rules.append(CriterionRule(cid, desc, float(weight), tuple(
            _check(c, f"{where}.checks[{j}]", j) for j, c in enumerate(checks))))
    return tuple(rules)
