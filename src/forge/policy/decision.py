"""The policy interface: `PolicyEngine.decide(package, input) -> Decision`, and its errors.

A decision is allow or deny with human-readable reasons. An engine that cannot answer
raises `PolicyUnavailable`; callers must fail closed and retry later, and must never record
an outage as a deny.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){0,7}\Z")
MAX_INPUT_DEPTH = 16
# Characters refused in input strings: regopy does not re-escape string values from input
# in its JSON output, so a quote, backslash or control character could corrupt or forge a
# result. Policy inputs are identifiers and names; they never need these.
UNSAFE_CHARS = re.compile(r'["\\\x00-\x1f\x7f]')


def no_repeated_keys(refuse: Callable[[str], PolicyError]
                     ) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A `json.loads` object hook building each object, raising ``refuse(message)`` for a
    key given twice (the engine's output, a policy data file: JSON keeps the last)."""
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise refuse(f"key {key!r} appears twice")
            out[key] = value
        return out
    return hook


class PolicyError(Exception):
    """Base class of policy failures."""


class PolicyUnavailable(PolicyError):
    """The engine could not be reached or did not answer in time: fail closed and retry."""


class PolicyEvaluationError(PolicyError):
    """The engine answered, but not with a usable decision (bad policy or engine bug)."""


class PolicyInputError(PolicyError, ValueError):
    """The package name or input document is not acceptable; names the offending field."""


class PolicyHashMismatch(PolicyError):
    """The loaded policy bundle is not the pinned one (OPA_POLICY_HASH)."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"policy bundle hash mismatch: OPA_POLICY_HASH expects {expected}, "
            f"but the loaded policies hash to {actual}"
        )


@dataclass(frozen=True)
class Decision:
    """One gate's answer; `policy_hash` identifies the policy bundle that produced it."""

    allow: bool
    reasons: list[str] = field(default_factory=list)
    policy_hash: str = ""
    package: str = ""
    # True when answered from the decision cache (forge.policy.decision_cache), for the audit.
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the audit log and evidence bundle)."""
        return {
            "package": self.package,
            "allow": self.allow,
            "reasons": list(self.reasons),
            "policy_hash": self.policy_hash,
            "cached": self.cached,
        }


@dataclass(frozen=True)
class GateDecisions:
    """Each gate's decision of one query, and their combination (`combined`): allow only if
    every gate allows; reasons prefixed with their package, in the entry's package order."""

    entry: str
    decisions: dict[str, Decision]
    combined: Decision

    @property
    def allow(self) -> bool:
        """True only when every gate of the entry allows."""
        return self.combined.allow

    @property
    def cached(self) -> bool:
        """True when the answer came from the decision cache (forge.policy.decision_cache)."""
        return self.combined.cached

    def as_cached(self) -> GateDecisions:
        """The same decisions marked as answered from the cache."""
        return GateDecisions(self.entry,
                             {k: replace(v, cached=True, reasons=list(v.reasons))
                              for k, v in self.decisions.items()},
                             replace(self.combined, cached=True,
                                     reasons=list(self.combined.reasons)))


@runtime_checkable
class PolicyEngine(Protocol):
    """What the orchestrator calls; implemented by EmbeddedEngine and RemoteEngine."""

    @property
    def policy_hash(self) -> str:
        """Hash of the policy bundle decisions are made with."""
        ...

    def decide(self, package: str, input: Mapping[str, Any]) -> Decision:
        """Evaluate `data.<package>.allow` and `deny_reasons` for `input`."""
        ...

    def decide_gates(self, entry: str, input: Mapping[str, Any]) -> GateDecisions:
        """Evaluate every gate of `forge.gates.<entry>` in one query (forge.policy.gates)."""
        ...

    def probe(self) -> None:
        """Raise PolicyUnavailable unless the engine can answer now (for /readyz)."""
        ...


def check_package(package: str) -> str:
    """Validate a dotted Rego package name (it becomes part of a query or URL path)."""
    if not isinstance(package, str) or not PACKAGE_RE.fullmatch(package):
        raise PolicyInputError(
            f"invalid policy package {package!r}: expected dotted lowercase names like "
            "forge.training"
        )
    return package


def _acceptable(value: Any, depth: int) -> bool:
    """check_input's verdict without naming anything (no path text built per field): the
    common case, an acceptable document, costs one walk."""
    if depth > MAX_INPUT_DEPTH:
        return False
    kind = type(value)
    if kind is str:
        return UNSAFE_CHARS.search(value) is None
    if kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    # Plain loops: a generator per object or list cost a third of this walk.
    if kind is dict:
        for k, v in value.items():
            if not (type(k) is str and _acceptable(k, depth + 1) and _acceptable(v, depth + 1)):
                return False
        return True
    if kind is list or kind is tuple:
        for v in value:  # noqa: SIM110 (a loop: all() over a generator is slower here)
            if not _acceptable(v, depth + 1):
                return False
        return True
    return False  # subclasses and other mappings: judged (and named) by _check


def check_input(value: Any, path: str = "input", depth: int = 0) -> None:
    """Refuse input documents the engines cannot evaluate faithfully, naming the field."""
    if not _acceptable(value, depth):
        _check(value, path, depth)


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_INPUT_DEPTH:
        raise PolicyInputError(f"{path}: nested deeper than {MAX_INPUT_DEPTH} levels")
    if isinstance(value, str):
        if UNSAFE_CHARS.search(value):
            raise PolicyInputError(
                f"{path}: contains a quote, backslash or control character, "
                "which policy input does not allow"
            )
    elif isinstance(value, bool) or value is None or isinstance(value, int):
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PolicyInputError(f"{path}: must be a finite number")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise PolicyInputError(f"{path}: object keys must be strings")
            _check(k, f"{path}.<key>", depth + 1)
            _check(v, f"{path}.{k}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check(v, f"{path}[{i}]", depth + 1)
    else:
        raise PolicyInputError(f"{path}: unsupported type {type(value).__name__}")


def decision_from_result(
    package: str, allow_value: Any, reasons_value: Any, policy_hash: str
) -> Decision:
    """Normalise raw `allow`/`deny_reasons` values; anything but `allow == true` with no
    reasons is a deny, and a deny always carries at least one reason."""
    if reasons_value is None:
        reasons: list[str] = []
    elif isinstance(reasons_value, list) and all(isinstance(r, str) for r in reasons_value):
        reasons = sorted(set(reasons_value))
    else:
        raise PolicyEvaluationError(f"data.{package}.deny_reasons is not a set of strings")
    allow = allow_value is True and not reasons
    if not allow and not reasons:
        state = "undefined" if allow_value is None else "not true"
        reasons = [f"data.{package}.allow is {state} and the policy gave no reason"]
    return Decision(allow=allow, reasons=reasons, policy_hash=policy_hash, package=package)
