"""Attack: make the policy decision cache answer one learner's question with another's
decision — an input differing in one field (tenant, plan, the assignment's window or
attempts) or a policy bundle that changed since the decision was made.

Before (a cache keyed by less than the whole input, or not by the bundle): a decision
made for one tenant, plan or window would be served for another, e.g. an allow inside one
learner's window for a spawn after another's window closed, or the old bundle's allow after
a stricter policy was deployed. After: the key is (bundle hash, package or gates entry,
sha256 of the whole input as canonical JSON), so any differing field or bundle is a miss
and is judged by the engine; refused inputs and outages are never cached; a cached answer
is marked `cached` so the audit still records each decision. Real regopy engine, the
repository's policies and a changed copy of them.
"""

from __future__ import annotations

import copy
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from forge.content import content_path
from forge.policy import (
    CachedEngine,
    DecisionCache,
    EmbeddedEngine,
    PolicyBundle,
    PolicyInputError,
    PolicyUnavailable,
    RemoteEngine,
    input_digest,
    make_policy_engine,
)

from ..support.policy_copies import patched_policies

POLICIES = content_path("policies")


def _spawn_doc() -> dict[str, Any]:
    return {
        "request": {"request_id": "req-00000001", "track": "netplus"},
        "subject": "lea", "tenant": "acme",
        "plan": {"name": "FREE", "tracks": ["netplus"]},
        "quota": {"concurrent": {"limit": 1, "used": 0},
                  "rate": {"limit_per_minute": 5, "used": 0}},
        "assignment": {"id": "asg-1", "now_s": 1500, "opens_at": "2026-12-01T09:00:00Z",
                       "opens_at_s": 1000, "closes_at": "2026-12-01T10:00:00Z",
                       "closes_at_s": 2000, "attempts": {"allowed": 1, "used": 0},
                       "hints_allowed": False},
    }


def _changed(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def real() -> EmbeddedEngine:
    return EmbeddedEngine(PolicyBundle.load(POLICIES))


@pytest.mark.parametrize(("path", "value", "reason"), [
    (("tenant",), "", "tenant must be a non-empty string"),
    (("plan", "tracks"), ["ccna"], 'plan FREE does not include track "netplus"'),
    (("assignment", "now_s"), 2000, "assignment asg-1 closed at 2026-12-01T10:00:00Z"),
    (("assignment", "attempts", "used"), 1, "all 1 attempts of assignment asg-1 are used"),
    (("quota", "concurrent", "used"), 1, "concurrent scenario quota reached (1 of 1 in use)"),
])
def test_one_differing_field_never_shares_a_decision(real: EmbeddedEngine, path: tuple[str, ...],
                                                     value: Any, reason: str) -> None:
    engine = CachedEngine(real, DecisionCache(64))
    first = _spawn_doc()
    allowed = engine.decide_gates("all", {**first, "template": None})
    assert allowed.decisions["forge.spawn"].allow and not allowed.cached
    # The same question again is answered from the cache, and says so (for the audit).
    again = engine.decide_gates("all", {**first, "template": None})
    assert again.cached and again.decisions == {k: replace(v, cached=True)
                                                for k, v in allowed.decisions.items()}
    other = {**_changed(first, path, value), "template": None}
    assert input_digest(other) != input_digest({**first, "template": None})
    judged = engine.decide_gates("all", other)
    assert not judged.cached
    spawn = judged.decisions["forge.spawn"]
    assert not spawn.allow and spawn.reasons == [reason]
    # The package query is keyed the same way.
    assert engine.decide("forge.spawn", first).allow
    denied = engine.decide("forge.spawn", _changed(first, path, value))
    assert not denied.allow and not denied.cached and denied.reasons == [reason]


def test_a_changed_bundle_misses_the_cache(real: EmbeddedEngine, tmp_path: Path) -> None:
    """A reload with a stricter policy (FREE no longer judged on its own) is never answered
    with the old bundle's allow, even through the same cache."""
    cache = DecisionCache(64)
    old = CachedEngine(real, cache)
    doc = _spawn_doc()
    assert old.decide("forge.assignment", {"assignment": doc["assignment"]}).allow
    stricter = patched_policies(tmp_path, "assignment.rego", '\taction_of(input) == "spawn"\n',
                                "\tfalse\n")
    new = CachedEngine(EmbeddedEngine(PolicyBundle.load(stricter)), cache)
    assert new.policy_hash != old.policy_hash
    d = new.decide("forge.assignment", {"assignment": doc["assignment"]})
    assert not d.allow and not d.cached
    assert old.decide("forge.assignment", {"assignment": doc["assignment"]}).cached


def test_refusals_and_outages_are_never_cached(real: EmbeddedEngine) -> None:
    cache = DecisionCache(8)
    engine = CachedEngine(real, cache)
    with pytest.raises(PolicyInputError, match=r"input\.tenant"):
        engine.decide("forge.spawn", {**_spawn_doc(), "tenant": 'acme", "allow": true'})
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = CachedEngine(RemoteEngine(f"http://127.0.0.1:{port}", retries=0), cache)
    with pytest.raises(PolicyUnavailable):
        down.decide("forge.spawn", _spawn_doc())
    assert len(cache) == 0


def test_a_caller_changing_its_answer_does_not_change_the_cache(real: EmbeddedEngine) -> None:
    engine = CachedEngine(real, DecisionCache(8))
    doc = {**_spawn_doc(), "tenant": ""}
    first = engine.decide("forge.spawn", doc)
    first.reasons.clear()
    assert engine.decide("forge.spawn", doc).reasons == ["tenant must be a non-empty string"]
    gates = engine.decide_gates("admit", doc)
    gates.decisions["forge.spawn"].reasons.clear()
    assert engine.decide_gates("admit", doc).decisions["forge.spawn"].reasons == [
        "tenant must be a non-empty string"]


def test_the_cache_is_bounded(real: EmbeddedEngine) -> None:
    cache = DecisionCache(4)
    engine = CachedEngine(real, cache)
    for used in range(10):
        engine.decide("forge.spawn", _changed(_spawn_doc(), ("quota", "rate", "used"), used))
    assert len(cache) == 4



def test_a_remote_opa_is_never_cached() -> None:
    """With OPA_URL the server may load another bundle while the local hash stays the same:
    every decision goes to the server (nothing listens here; only the wiring is checked)."""
    assert isinstance(make_policy_engine(None, None), CachedEngine)
    remote = make_policy_engine("http://127.0.0.1:9", None)
    assert isinstance(remote, RemoteEngine) and not isinstance(remote, CachedEngine)
    remote.close()


def test_a_lone_surrogate_is_decided_not_a_server_error(real: EmbeddedEngine) -> None:
    """A subject holding a lone surrogate (JSON-decodable from a request) is judged as the
    uncached engine judges it, and cached under one digest. Before: the digest's
    `ensure_ascii=False` + utf-8 encode raised UnicodeEncodeError (a 500, not a decision)."""
    doc = {**_spawn_doc(), "subject": "l\udc80a"}
    engine = CachedEngine(real, DecisionCache(8))
    first = engine.decide_gates("admit", doc)
    assert (first.allow, first.combined.reasons) == (
        real.decide_gates("admit", doc).allow, real.decide_gates("admit", doc).combined.reasons)
    assert engine.decide_gates("admit", doc).combined.cached
    assert input_digest(doc) != input_digest(_spawn_doc())
