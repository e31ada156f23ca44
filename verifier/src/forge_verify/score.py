"""The weighted score and the score.json document, computed only from graded check results.

score = sum(weight * passed) / sum(weight) over criteria; a criterion passes when every one
of its checks passed. Criteria (id, description, weight, number of checks) come from the
template, never from the completion event, and a number asserted by a caller is never used.
Standard library only: the offline verifier recomputes the score with `compute_score`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SCORE_FORMAT = "forge.score/v1"
SCENARIO_ID_RE = re.compile(r"scn-[0-9a-f]{16}")
CRITERION_ID_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
SCORE_DECIMALS = 6


class ScoreInputError(ValueError):
    """Scoring inputs are incomplete or inconsistent; the message names the field."""


def require_scenario_id(value: object, field_name: str = "scenario_id") -> str:
    """Return `value` if it is a valid scenario id (`scn-` + 16 lowercase hex), else raise."""
    if not isinstance(value, str) or SCENARIO_ID_RE.fullmatch(value) is None:
        raise ScoreInputError(f"{field_name}: must be 'scn-' followed by 16 lowercase hex digits")
    return value


def _require_sha256(value: str, field_name: str) -> None:
    if SHA256_RE.fullmatch(value) is None:
        raise ScoreInputError(f"{field_name}: must be 64 lowercase hex digits")


def _require_text(value: str, field_name: str, limit: int = 256) -> None:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ScoreInputError(f"{field_name}: must be a non-empty string of at most {limit} chars")


def format_time(value: datetime, field_name: str) -> str:
    """RFC 3339 UTC with second precision; naive datetimes are refused."""
    if value.tzinfo is None:
        raise ScoreInputError(f"{field_name}: datetime must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class StreamOutput:
    """One captured output stream: text kept (maybe truncated) plus facts about the full text."""

    text: str
    sha256: str
    size: int
    truncated: bool

    def __post_init__(self) -> None:
        _require_sha256(self.sha256, "sha256")
        if self.size < 0:
            raise ScoreInputError("size: must be >= 0")


@dataclass(frozen=True)
class CheckResult:
    """A graded check as run inside the lab by the orchestrator."""

    criterion_id: str
    check_index: int
    passed: bool
    exit_code: int | None
    stdout: StreamOutput
    stderr: StreamOutput
    timed_out: bool
    duration_ms: int
    container: str = ""
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if CRITERION_ID_RE.fullmatch(self.criterion_id) is None:
            raise ScoreInputError(f"criterion_id: invalid id {self.criterion_id!r}")
        if self.check_index < 0:
            raise ScoreInputError(f"check_index: must be >= 0 for {self.criterion_id}")
        if self.duration_ms < 0:
            raise ScoreInputError(f"duration_ms: must be >= 0 for {self.criterion_id}")


@dataclass(frozen=True)
class CriterionSpec:
    """A success criterion as declared by the template."""

    id: str
    description: str
    weight: float
    check_count: int

    def __post_init__(self) -> None:
        if CRITERION_ID_RE.fullmatch(self.id) is None:
            raise ScoreInputError(f"criteria.id: invalid id {self.id!r}")
        if not math.isfinite(self.weight) or self.weight <= 0:
            raise ScoreInputError(f"criteria[{self.id}].weight: must be a positive number")
        if self.check_count < 1:
            raise ScoreInputError(f"criteria[{self.id}].check_count: must be >= 1")


@dataclass(frozen=True)
class ScoreInputs:
    """Everything score.json states; identity fields come from verified tokens."""

    scenario_id: str
    run_id: str
    track: str
    template_name: str
    template_sha256: str
    subject: str
    tenant_id: str
    plan: str
    retention_days: int
    completion_reason: str
    started_at: datetime
    completed_at: datetime
    criteria: tuple[CriterionSpec, ...]
    results: tuple[CheckResult, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_scenario_id(self.scenario_id)
        for name in ("run_id", "track", "template_name", "subject", "tenant_id", "plan",
                     "completion_reason"):
            _require_text(getattr(self, name), name)
        _require_sha256(self.template_sha256, "template_sha256")
        if self.retention_days < 1:
            raise ScoreInputError("retention_days: must be >= 1")
        if self.completed_at < self.started_at:
            raise ScoreInputError("completed_at: must not be before started_at")
        if not self.criteria:
            raise ScoreInputError("criteria: at least one criterion is required")


@dataclass(frozen=True)
class ScoreSummary:
    """The computed result: fraction of weight earned, criteria passed, criteria total."""

    score: float
    passed: int
    total: int


def compute_score(criteria: Sequence[tuple[float, bool]]) -> ScoreSummary:
    """Weighted score over (weight, passed) pairs, rounded to SCORE_DECIMALS."""
    total_weight = math.fsum(w for w, _ in criteria)
    if total_weight <= 0:
        raise ScoreInputError("criteria: total weight must be positive")
    earned = math.fsum(w for w, ok in criteria if ok)
    passed = sum(1 for _, ok in criteria if ok)
    return ScoreSummary(round(earned / total_weight, SCORE_DECIMALS), passed, len(criteria))


def grouped_results(inputs: ScoreInputs) -> dict[str, list[CheckResult]]:
    """Results per criterion in check order; refuses unknown, duplicate or missing checks."""
    specs = {c.id: c for c in inputs.criteria}
    if len(specs) != len(inputs.criteria):
        raise ScoreInputError("criteria: criterion ids must be unique")
    by_id: dict[str, dict[int, CheckResult]] = {c.id: {} for c in inputs.criteria}
    for r in inputs.results:
        spec = specs.get(r.criterion_id)
        if spec is None:
            raise ScoreInputError(f"results: unknown criterion {r.criterion_id!r}")
        if r.check_index >= spec.check_count:
            raise ScoreInputError(
                f"results: {r.criterion_id} has {spec.check_count} checks, got index "
                f"{r.check_index}"
            )
        if r.check_index in by_id[r.criterion_id]:
            raise ScoreInputError(f"results: duplicate {r.criterion_id}[{r.check_index}]")
        by_id[r.criterion_id][r.check_index] = r
    for spec in inputs.criteria:
        missing = [i for i in range(spec.check_count) if i not in by_id[spec.id]]
        if missing:
            raise ScoreInputError(f"results: {spec.id} is missing checks {missing}")
    return {cid: [checks[i] for i in sorted(checks)] for cid, checks in by_id.items()}


def check_member_prefix(criterion_id: str, index: int) -> str:
    """Bundle path prefix holding one check's outputs."""
    return f"checks/{criterion_id}/{index}"


def _stream_doc(out: StreamOutput, member: str) -> dict[str, Any]:
    return {"sha256": out.sha256, "size": out.size, "truncated": out.truncated,
            "evidence": member}


def build_score_document(
    inputs: ScoreInputs, audit_entries: int, audit_head: str
) -> dict[str, Any]:
    """The score.json document (a plain dict ready for canonical JSON)."""
    groups = grouped_results(inputs)
    criteria_docs: list[dict[str, Any]] = []
    pairs: list[tuple[float, bool]] = []
    for spec in inputs.criteria:
        checks = groups[spec.id]
        ok = all(c.passed for c in checks)
        pairs.append((spec.weight, ok))
        check_docs = []
        refs: list[str] = []
        for c in checks:
            prefix = check_member_prefix(spec.id, c.check_index)
            refs.extend([f"{prefix}/result.json", f"{prefix}/stdout.txt", f"{prefix}/stderr.txt"])
            check_docs.append({
                "index": c.check_index, "container": c.container, "command": list(c.command),
                "passed": c.passed, "exit_code": c.exit_code, "timed_out": c.timed_out,
                "duration_ms": c.duration_ms,
                "stdout": _stream_doc(c.stdout, f"{prefix}/stdout.txt"),
                "stderr": _stream_doc(c.stderr, f"{prefix}/stderr.txt"),
            })
        criteria_docs.append({
            "id": spec.id, "description": spec.description, "weight": spec.weight,
            "passed": ok, "checks": check_docs, "evidence": refs,
        })
    summary = compute_score(pairs)
    doc: dict[str, Any] = {
        "format": SCORE_FORMAT,
        "scenario_id": inputs.scenario_id,
        "run_id": inputs.run_id,
        "track": inputs.track,
        "template": {"name": inputs.template_name, "sha256": inputs.template_sha256},
        "subject": inputs.subject,
        "tenant_id": inputs.tenant_id,
        "plan": inputs.plan,
        "retention_days": inputs.retention_days,
        "completion_reason": inputs.completion_reason,
        "started_at": format_time(inputs.started_at, "started_at"),
        "completed_at": format_time(inputs.completed_at, "completed_at"),
        "score": summary.score,
        "passed": summary.passed,
        "total": summary.total,
        "criteria": criteria_docs,
        "audit": {"entries": audit_entries, "head": audit_head},
    }
    if inputs.extra:
        doc["extra"] = inputs.extra
    return doc


def recompute_from_document(doc: dict[str, Any]) -> ScoreSummary:
    """Recompute score/passed/total from a score.json's criteria (used by the verifier)."""
    criteria = doc.get("criteria")
    if not isinstance(criteria, list) or not criteria:
        raise ScoreInputError("criteria: missing or empty")
    pairs: list[tuple[float, bool]] = []
    for i, crit in enumerate(criteria):
        if not isinstance(crit, dict):
            raise ScoreInputError(f"criteria[{i}]: not an object")
        weight, checks = crit.get("weight"), crit.get("checks")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise ScoreInputError(f"criteria[{i}].weight: not a positive number")
        if not isinstance(checks, list) or not checks:
            raise ScoreInputError(f"criteria[{i}].checks: missing or empty")
        ok = all(isinstance(c, dict) and c.get("passed") is True for c in checks)
        if crit.get("passed") is not ok:
            raise ScoreInputError(f"criteria[{i}].passed: disagrees with its checks")
        pairs.append((float(weight), ok))
    return compute_score(pairs)
