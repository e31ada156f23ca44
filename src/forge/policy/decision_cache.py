"""A bounded decision cache in front of any PolicyEngine (issue 19 item 4).

A policy is pure: the same bundle and the same input always give the same decision. So a
decision is kept under (policy bundle hash, package or gates entry, sha256 of the whole
input as canonical JSON: sorted keys, no whitespace — the whole input, even where the
engine is handed only the fields a gates entry reads). No field is left out of the
digest, so two inputs that differ anywhere (tenant, plan, assignment window, a quota
count) never share a decision; a bundle with another hash
(rotation, reload) never meets the old entries, which age out of the LRU. Refused inputs
and engine failures (PolicyInputError, PolicyUnavailable, ...) are never cached.

Hits are answered with `cached=True` on the Decision, so callers still record each
decision in their audit trail, marked as a cache answer.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from forge.policy.decision import (
    Decision,
    GateDecisions,
    PolicyEngine,
    check_input,
    check_package,
)
from forge.policy.embedded import EmbeddedEngine
from forge.policy.gates import entry_path

DEFAULT_SIZE = 4096
Key = tuple[str, str, str, str]


def canonical_json(input: Mapping[str, Any]) -> str:
    """The input as canonical JSON: sorted keys, compact, ASCII (lone surrogates escaped,
    never an encoding error), no NaN. Call check_input first: it names a refused field."""
    return json.dumps(input, sort_keys=True, separators=(",", ":"), allow_nan=False)


def input_digest(input: Mapping[str, Any]) -> str:
    """sha256 of the whole input as canonical JSON (see canonical_json)."""
    return _digest(canonical_json(input))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class DecisionCache:
    """LRU map from (policy hash, kind, name, input digest) to a decision; thread-safe.
    One cache may serve several engines (e.g. before and after a bundle reload)."""

    def __init__(self, max_entries: int = DEFAULT_SIZE) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._items: OrderedDict[Key, Decision | GateDecisions] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: Key) -> Decision | GateDecisions | None:
        """The cached answer (most recently used now), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Key, value: Decision | GateDecisions) -> None:
        """Keep an answer, dropping the least recently used beyond `max_entries`."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)


class CachedEngine:
    """PolicyEngine that answers repeated (bundle, input) questions from a DecisionCache."""

    def __init__(self, inner: PolicyEngine, cache: DecisionCache | None = None) -> None:
        self.inner = inner
        self.cache = cache if cache is not None else DecisionCache()

    @property
    def policy_hash(self) -> str:
        """Hash of the inner engine's policy bundle (part of every cache key)."""
        return self.inner.policy_hash

    def _prepare(self, kind: str, name: str, input: Mapping[str, Any]) -> Key:
        """Check the input once (refused inputs raise before any lookup; never cached) and
        key it by the digest of the whole input."""
        check_input(input)
        return (self.inner.policy_hash, kind, name, input_digest(input))

    def decide(self, package: str, input: Mapping[str, Any]) -> Decision:
        """One package's decision, from the cache when this bundle already judged `input`."""
        key = self._prepare("package", check_package(package), input)
        hit = self.cache.get(key)
        if isinstance(hit, Decision):
            return replace(hit, cached=True, reasons=list(hit.reasons))
        if isinstance(self.inner, EmbeddedEngine):
            decision = self.inner.decide_checked(package, input)
        else:
            decision = self.inner.decide(package, input)
        self.cache.put(key, replace(decision, reasons=list(decision.reasons)))
        return decision

    def decide_gates(self, entry: str, input: Mapping[str, Any]) -> GateDecisions:
        """Every gate of an entry in one query, from the cache when already judged."""
        key = self._prepare("gates", entry_path(entry), input)
        hit = self.cache.get(key)
        if isinstance(hit, GateDecisions):
            return hit.as_cached()
        if isinstance(self.inner, EmbeddedEngine):
            decisions = self.inner.decide_gates_checked(entry, input)
        else:
            decisions = self.inner.decide_gates(entry, input)
        self.cache.put(key, decisions.as_cached())  # a copy: callers may keep theirs
        return decisions

    def probe(self) -> None:
        """Readiness of the inner engine (the cache never answers a probe)."""
        self.inner.probe()
