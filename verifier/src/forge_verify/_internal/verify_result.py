"""What a verification found: every failed check with its reason, and what held.

Kept apart from the checks so the report, the CLI and the credential checks read one
result type without importing the verdict checks themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class InputError(Exception):
    """An input file is missing or unreadable (exit code 2, not a verification failure)."""


@dataclass(frozen=True)
class Reason:
    """One failed check: a stable code and a human explanation."""

    code: str
    message: str


@dataclass
class VerifyResult:
    """Everything the verifier found; `status` is PASS, FAIL or ERROR (unreadable input)."""

    reasons: list[Reason] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    origin: str = "not_checked"
    error: bool = False
    scenario_id: str | None = None
    key_id: str | None = None
    score: float | None = None
    passed: int | None = None
    total: int | None = None
    learner: str | None = None  # "tenant/subject", as score.json names them
    lab: str | None = None  # the template's name
    track: str | None = None
    template_sha256: str | None = None

    @property
    def ok(self) -> bool:
        """True only when nothing failed and every input was readable."""
        return not self.reasons and not self.error

    @property
    def status(self) -> str:
        """PASS, FAIL or ERROR."""
        return "ERROR" if self.error else ("PASS" if not self.reasons else "FAIL")

    @property
    def exit_code(self) -> int:
        """0 PASS, 1 FAIL, 2 unreadable input."""
        return {"PASS": 0, "FAIL": 1, "ERROR": 2}[self.status]

    def fail(self, code: str, message: str) -> None:
        """Record a failed check."""
        self.reasons.append(Reason(code, message))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for --json)."""
        return {
            "status": self.status, "ok": self.ok, "origin": self.origin,
            "scenario_id": self.scenario_id, "key_id": self.key_id, "score": self.score,
            "passed": self.passed, "total": self.total, "learner": self.learner,
            "lab": self.lab, "track": self.track, "template_sha256": self.template_sha256,
            "checked": self.checked,
            "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
            "notes": self.notes,
        }
