"""Attack: an assignment document whose window is closed (or attempts used) but which lacks
a display field (`id`, `opens_at`, `closes_at`) is admitted.

Before: the window and attempt refusals existed only as message text built from those
fields; a missing field left the reason undefined, so the reason set was empty and
forge.gates.admit, forge.spawn and forge.assignment allowed the spawn. After: every allow
that judges a window also requires a positive `window_ok` (well-formed numbers, open
window, attempts left), and the messages render with "?" for a missing field. Evaluated on
the real repository bundle with the embedded engine.
"""

from __future__ import annotations

from typing import Any

import pytest

from forge.content import content_path
from forge.policy import EmbeddedEngine, PolicyBundle

CLOSED_NO_ID: dict[str, Any] = {"now_s": 200, "opens_at_s": 0, "closes_at_s": 100,
                                "attempts": {"allowed": 3, "used": 0}}
NOT_OPEN_NO_TEXT: dict[str, Any] = {"id": "asg-1", "now_s": 5, "opens_at_s": 10,
                                    "closes_at_s": 100, "attempts": {"allowed": 3, "used": 0}}
USED_UP_NO_ID: dict[str, Any] = {"now_s": 50, "opens_at_s": 0, "closes_at_s": 100,
                                 "attempts": {"allowed": 2, "used": 2}}
MALFORMED = [CLOSED_NO_ID, NOT_OPEN_NO_TEXT, USED_UP_NO_ID]


@pytest.fixture(scope="module")
def engine() -> EmbeddedEngine:
    return EmbeddedEngine(PolicyBundle.load(content_path("policies")))


def _spawn_doc(assignment: dict[str, Any]) -> dict[str, Any]:
    return {
        "request": {"request_id": "req-000001", "track": "netplus"},
        "subject": "alice", "tenant": "acme",
        "plan": {"name": "PRO", "tracks": ["netplus"]},
        "quota": {"concurrent": {"used": 0, "limit": 3},
                  "rate": {"used": 0, "limit_per_minute": 10}},
        "assignment": assignment,
    }


@pytest.mark.parametrize("assignment", MALFORMED, ids=["closed", "not-open", "used-up"])
def test_window_without_display_fields_is_refused_by_every_gate(
        engine: EmbeddedEngine, assignment: dict[str, Any]) -> None:
    doc = _spawn_doc(assignment)
    admit = engine.decide_gates("admit", doc)
    assert not admit.allow
    assert admit.combined.reasons  # a rendered reason, not an empty deny
    spawn = engine.decide("forge.spawn", doc)
    assert not spawn.allow and spawn.reasons
    alone = engine.decide("forge.assignment", {"assignment": assignment})
    assert not alone.allow and alone.reasons


def test_open_window_without_display_fields_is_still_admitted(engine: EmbeddedEngine) -> None:
    """The positive check does not refuse a well-formed open window for lacking its text."""
    open_window = {"now_s": 50, "opens_at_s": 0, "closes_at_s": 100,
                   "attempts": {"allowed": 3, "used": 0}}
    assert engine.decide_gates("admit", _spawn_doc(open_window)).allow
