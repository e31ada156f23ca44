"""States and the transitions allowed between them."""

from __future__ import annotations

PENDING, LAUNCHING, RUNNING, GRADING = "pending", "launching", "running", "grading"
COMPLETED, FAILED, EXPIRED, DELETED = "completed", "failed", "expired", "deleted"
TERMINAL = frozenset({COMPLETED, FAILED, EXPIRED, DELETED})
LIVE = frozenset({LAUNCHING, RUNNING, GRADING})

ALLOWED: dict[str, frozenset[str]] = {
    PENDING: frozenset({LAUNCHING, FAILED, EXPIRED, DELETED}),
    LAUNCHING: frozenset({RUNNING, FAILED, EXPIRED, DELETED}),
    RUNNING: frozenset({GRADING, FAILED, EXPIRED, DELETED}),
    GRADING: frozenset({COMPLETED, FAILED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    EXPIRED: frozenset(),
    DELETED: frozenset(),
}


class IllegalTransition(Exception):
    """A move the state machine forbids (e.g. completed → running)."""

    def __init__(self, scenario_id: str, current: str, target: str) -> None:
        super().__init__(f"scenario {scenario_id}: {current} → {target} is not allowed")
        self.current = current
        self.target = target


def check(scenario_id: str, current: str, target: str) -> None:
    """Raise IllegalTransition unless `current → target` is allowed."""
    if target not in ALLOWED.get(current, frozenset()):
        raise IllegalTransition(scenario_id, current, target)
