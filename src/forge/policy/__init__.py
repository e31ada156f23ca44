"""Rego policy gates: one `PolicyEngine.decide` interface, embedded and remote engines,
the policy bundle hash and its pin, and the input builders for each package."""

from __future__ import annotations

from pathlib import Path

from forge.policy.decision import (
    Decision,
    GateDecisions,
    PolicyEngine,
    PolicyError,
    PolicyEvaluationError,
    PolicyHashMismatch,
    PolicyInputError,
    PolicyUnavailable,
)
from forge.policy.decision_cache import DEFAULT_SIZE, CachedEngine, DecisionCache, input_digest
from forge.policy.embedded import EmbeddedEngine
from forge.policy.gates import ENTRIES, combined_decision
from forge.policy.inputs import (
    ASSIGNMENT_PACKAGE,
    TRAINING_PACKAGES,
    build_assignment_input,
    build_spawn_input,
    build_training_input,
)
from forge.policy.rego_bundle import (
    PolicyBundle,
    check_pinned_hash,
    default_policy_dir,
    policy_hash,
)
from forge.policy.remote import CircuitBreaker, RemoteEngine


def make_policy_engine(opa_url: str | None = None, policy_dir: Path | None = None,
                       cache_size: int = DEFAULT_SIZE) -> PolicyEngine:
    """RemoteEngine when `opa_url` is set (OPA_URL), else EmbeddedEngine; both report the
    hash of the local bundle in `policy_dir` (what OPA_POLICY_HASH pins). The embedded
    engine sits behind a decision cache of `cache_size` entries (0: none), keyed by that
    hash and the whole input. A remote OPA is never cached: it may load another bundle
    without the local hash changing, and a decision must come from the bundle in force."""
    bundle = PolicyBundle.load(policy_dir)
    if opa_url:
        return RemoteEngine(opa_url, policy_hash=bundle.hash)
    engine = EmbeddedEngine(bundle)
    return CachedEngine(engine, DecisionCache(cache_size)) if cache_size > 0 else engine


def decide_all(
    engine: PolicyEngine, input: dict[str, object], packages: tuple[str, ...] = TRAINING_PACKAGES
) -> Decision:
    """Combine several gates, one query per package (forge.gates answers a known entry in
    one): allow only if every package allows; reasons concatenated in package order, each
    prefixed with its package. Raises PolicyUnavailable on outage."""
    decisions = {package: engine.decide(package, input) for package in packages}
    return combined_decision(packages, decisions, engine.policy_hash)


__all__ = [
    "ASSIGNMENT_PACKAGE",
    "ENTRIES",
    "TRAINING_PACKAGES",
    "CachedEngine",
    "CircuitBreaker",
    "Decision",
    "DecisionCache",
    "EmbeddedEngine",
    "GateDecisions",
    "PolicyBundle",
    "PolicyEngine",
    "PolicyError",
    "PolicyEvaluationError",
    "PolicyHashMismatch",
    "PolicyInputError",
    "PolicyUnavailable",
    "RemoteEngine",
    "build_assignment_input",
    "build_spawn_input",
    "build_training_input",
    "check_pinned_hash",
    "decide_all",
    "default_policy_dir",
    "input_digest",
    "make_policy_engine",
    "policy_hash",
]
