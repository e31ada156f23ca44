"""The weighted score and the score.json document, computed only from graded check results.

score = sum(weight * passed) / sum(weight) over criteria; a criterion passes when every one
of its checks passed. Hints the learner revealed each cost a fraction of the total score:
final = max(0, raw - sum(cost)), the raw score kept beside it as `raw_score`. Criteria
(id, description, weight, number of checks) come from the template, never from the
completion event, and a number asserted by a caller is never used.
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
HINT_ID_RE = re.compile(r"h[1-9][0-9]?")
MAX_HINT_COST = 0.5
TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


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


def require_hint_cost(value: object, field_name: str) -> float:
    """A hint's cost: a finite number from 0 to MAX_HINT_COST (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or not 0 <= value <= MAX_HINT_COST:
        raise ScoreInputError(f"{field_name}: must be a number from 0 to {MAX_HINT_COST}")
    return float(value)


@dataclass(frozen=True)
class HintUse:
    """A hint the learner revealed: its id (`h1`, `h2`, … in template order), the criterion
    it helps with (None: the whole lab), its cost (fraction of the total score) and when."""

    id: str
    criterion: str | None
    cost: float
    revealed_at: str

    def __post_init__(self) -> None:
        if HINT_ID_RE.fullmatch(self.id) is None:
            raise ScoreInputError(f"hints.id: invalid hint id {self.id!r}")
        if self.criterion is not None and CRITERION_ID_RE.fullmatch(self.criterion) is None:
            raise ScoreInputError(f"hints[{self.id}].criterion: invalid id")
        require_hint_cost(self.cost, f"hints[{self.id}].cost")
        if TIME_RE.fullmatch(self.revealed_at) is None:
            raise ScoreInputError(f"hints[{self.id}].revealed_at: must be RFC 3339 UTC "
                                  "(YYYY-MM-DDTHH:MM:SSZ)")

    def to_document(self) -> dict[str, Any]:
        """The JSON form in score.json and the bundle's aids member."""
        return {"id": self.id, "criterion": self.criterion, "cost": self.cost,
                "revealed_at": self.revealed_at}


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
    hints: tuple[HintUse, ...] = ()
    template_bundled_sha256: str | None = None  # the bundled template, when it differs

    def __post_init__(self) -> None:
        require_scenario_id(self.scenario_id)
        for name in ("run_id", "track", "template_name", "subject", "tenant_id", "plan",
                     "completion_reason"):
            _require_text(getattr(self, name), name)
        _require_sha256(self.template_sha256, "template_sha256")
        if self.template_bundled_sha256 is not None:
            _require_sha256(self.template_bundled_sha256, "template_bundled_sha256")
        if self.retention_days < 1:
            raise ScoreInputError("retention_days: must be >= 1")
        if self.completed_at < self.started_at:
            raise ScoreInputError("completed_at: must not be before started_at")
        if not self.criteria:
            raise ScoreInputError("criteria: at least one criterion is required")
        if len({h.id for h in self.hints}) != len(self.hints):
            raise ScoreInputError("hints: hint ids must be unique")


@dataclass(frozen=True)
class ScoreSummary:
    """The computed result: fraction of weight earned, criteria passed, criteria total."""

    score: float
    passed: int
    total: int


def raw_score(criteria: Sequence[tuple[float, bool]]) -> float:
    """Weight earned over weight total, rounded to SCORE_DECIMALS (before any hint cost)."""
    try:  # weights near the float limit overflow the sum: a reason, not a traceback
        total_weight = math.fsum(w for w, _ in criteria)
        earned = math.fsum(w for w, ok in criteria if ok)
    except OverflowError:
        raise ScoreInputError("criteria: total weight is too large") from None
    if not math.isfinite(total_weight) or not math.isfinite(earned):
        raise ScoreInputError("criteria: total weight is too large")
    if total_weight <= 0:
        raise ScoreInputError("criteria: total weight must be positive")
    return round(earned / total_weight, SCORE_DECIMALS)


def compute_score(criteria: Sequence[tuple[float, bool]],
                  hint_costs: Sequence[float] = ()) -> ScoreSummary:
    """Weighted score over (weight, passed) pairs minus the revealed hints' costs (never
    below 0), rounded to SCORE_DECIMALS."""
    for i, cost in enumerate(hint_costs):
        require_hint_cost(cost, f"hints[{i}].cost")
    raw = raw_score(criteria)
    final = max(0.0, raw - math.fsum(hint_costs)) if hint_costs else raw
    passed = sum(1 for _, ok in criteria if ok)
    return ScoreSummary(round(final, SCORE_DECIMALS), passed, len(criteria))


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
    summary = compute_score(pairs, [h.cost for h in inputs.hints])
    doc: dict[str, Any] = {
        "format": SCORE_FORMAT,
        "scenario_id": inputs.scenario_id,
        "run_id": inputs.run_id,
        "track": inputs.track,
        "template": _template_doc(inputs),
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
    if inputs.hints:  # absent without hints: evidence from before hints reads the same
        doc["hints"] = [h.to_document() for h in inputs.hints]
        doc["raw_score"] = raw_score(pairs)
    return doc


def _template_doc(inputs: ScoreInputs) -> dict[str, str]:
    """score.json's `template`: the authored template's hash and, when the bundle holds it
    with hints' text withheld, the bundled bytes' hash (absent otherwise, as before)."""
    doc = {"name": inputs.template_name, "sha256": inputs.template_sha256}
    if inputs.template_bundled_sha256 is not None:
        doc["bundled_sha256"] = inputs.template_bundled_sha256
    return doc


def hints_from_document(doc: dict[str, Any]) -> tuple[HintUse, ...]:
    """The revealed hints a score.json lists (none when it has no `hints`)."""
    hints = doc.get("hints", [])
    if not isinstance(hints, list):
        raise ScoreInputError("hints: not a list")
    uses: list[HintUse] = []
    for i, h in enumerate(hints):
        if not isinstance(h, dict) or set(h) != {"id", "criterion", "cost", "revealed_at"}:
            raise ScoreInputError(f"hints[{i}]: must have exactly id, criterion, cost, "
                                  "revealed_at")
        for key in ("id", "revealed_at"):
            if not isinstance(h[key], str):
                raise ScoreInputError(f"hints[{i}].{key}: not a string")
        if h["criterion"] is not None and not isinstance(h["criterion"], str):
            raise ScoreInputError(f"hints[{i}].criterion: not a string or null")
        uses.append(HintUse(h["id"], h["criterion"],
                            require_hint_cost(h["cost"], f"hints[{i}].cost"), h["revealed_at"]))
    if len({u.id for u in uses}) != len(uses):
        raise ScoreInputError("hints: hint ids must be unique")
    return tuple(uses)


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
    hints = hints_from_document(doc)
    if hints and doc.get("raw_score") != raw_score(pairs):
        raise ScoreInputError("raw_score: disagrees with the criteria")
    return compute_score(pairs, [h.cost for h in hints])
