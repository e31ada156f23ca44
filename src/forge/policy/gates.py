"""Every gate in one query: `forge.gates.<entry>` answers each gate's decision at once.

One evaluation parses the input once and evaluates each gate's rules once (issue 19 item
4). Entries and the packages each must answer (policies/gates.rego):

- `launch`: forge.training + forge.capabilities (the orchestrator, before building a lab);
- `admit`: forge.spawn without quotas, with the assignment rules (spawn_service, before it
  reserves anything; the store's limiter enforces quotas atomically at the reservation);
- `all`: training + capabilities + spawn with quotas and assignment; test-only (no service
  asks it; bench/policy.py measures `launch` and `admit`).

An answer missing a package, or carrying another, is an evaluation error: fail closed.
"""

from __future__ import annotations

from typing import Any

from forge.policy.decision import (
    Decision,
    GateDecisions,
    PolicyEvaluationError,
    decision_from_result,
)

GATES_PACKAGE = "forge.gates"
ENTRIES: dict[str, tuple[str, ...]] = {
    "launch": ("forge.training", "forge.capabilities"),
    "admit": ("forge.spawn",),
    "all": ("forge.training", "forge.capabilities", "forge.spawn"),
}


def entry_path(entry: str) -> str:
    """`forge.gates.<entry>` for a known entry; PolicyEvaluationError otherwise."""
    if entry not in ENTRIES:
        raise PolicyEvaluationError(
            f"unknown gates entry {entry!r}; known: {', '.join(sorted(ENTRIES))}")
    return f"{GATES_PACKAGE}.{entry}"


def combined_decision(packages: tuple[str, ...], decisions: dict[str, Decision],
                      policy_hash: str) -> Decision:
    """The one rule combining gates (here and in forge.policy.decide_all): allow only if
    every package allows; reasons prefixed with their package, in package order."""
    reasons = [f"{p}: {r}" for p in packages for r in decisions[p].reasons]
    return Decision(allow=all(decisions[p].allow for p in packages), reasons=reasons,
                    policy_hash=policy_hash, package=",".join(packages))


def gate_decisions(entry: str, value: Any, policy_hash: str) -> GateDecisions:
    """Normalise the value of `data.forge.gates.<entry>` (None when undefined)."""
    packages = ENTRIES[entry]
    if not isinstance(value, dict) or set(value) != set(packages):
        raise PolicyEvaluationError(
            f"{entry_path(entry)} must answer exactly the gates {', '.join(packages)}")
    decisions: dict[str, Decision] = {}
    for package in packages:
        doc = value[package]
        if not isinstance(doc, dict):
            raise PolicyEvaluationError(f"{entry_path(entry)}: {package} is not a decision")
        decisions[package] = decision_from_result(package, doc.get("allow"),
                                                  doc.get("deny_reasons"), policy_hash)
    return GateDecisions(entry, decisions, combined_decision(packages, decisions, policy_hash))
