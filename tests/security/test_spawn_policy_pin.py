"""spawn_service decides assignment windows and hints with the policy bundle (package
`forge.assignment`), so the operator's pin applies to it as to the orchestrator. Before: it
loaded the bundle at its first assigned spawn without checking OPA_POLICY_HASH, so an
unreviewed bundle decided windows. After: a pin of another bundle stops it at start,
showing both hashes; the reviewed bundle's hash starts it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forge.config import load_settings
from forge.policy import make_policy_engine
from forge.policy.rego_bundle import PolicyHashMismatch
from forge.services.spawn.app import build_app

from ..services.conftest import prod_environ

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


def test_spawn_service_refuses_a_policy_bundle_other_than_the_pinned_one(tmp_path: Path
                                                                         ) -> None:
    actual = make_policy_engine(None, None).policy_hash
    pinned = "0" * len(actual)
    with pytest.raises(PolicyHashMismatch) as refused:
        build_app(load_settings(prod_environ(tmp_path / "a", OPA_POLICY_HASH=pinned)))
    assert pinned in str(refused.value) and actual in str(refused.value)
    app = build_app(load_settings(prod_environ(tmp_path / "b", OPA_POLICY_HASH=actual)))
    assert app.state.spawn.policy.policy_hash == actual


def test_readiness_names_a_bundle_other_than_the_pinned_one(tmp_path: Path) -> None:
    """An engine over another bundle (a reload gone wrong) fails the `policy` check, naming
    both hashes; the pinned bundle passes it."""
    from forge.content import content_path
    from forge.policy import EmbeddedEngine, PolicyBundle
    from forge.services.common.readiness import CheckFailed
    from forge.services.spawn.app import _policy_check

    actual = make_policy_engine(None, None).policy_hash
    app = build_app(load_settings(prod_environ(tmp_path / "a", OPA_POLICY_HASH=actual)))
    state = app.state.spawn
    assert _policy_check(state) == f"policy hash {actual} (pinned by OPA_POLICY_HASH)"
    other = tmp_path / "policies"
    shutil.copytree(content_path("policies"), other)
    (other / "extra.rego").write_text("package forge.extra\n\nimport rego.v1\n\nx := 1\n")
    state.policy = EmbeddedEngine(PolicyBundle.load(other))
    with pytest.raises(CheckFailed) as failed:
        _policy_check(state)
    assert actual in str(failed.value) and state.policy.policy_hash in str(failed.value)


def test_remote_policy_readiness_says_the_remote_bundle_is_not_verified_here(
        tmp_path: Path) -> None:
    """With OPA_URL, the local hash is only what OPA_POLICY_HASH pins: the `policy` check
    says the bundle OPA evaluates is not verified by spawn_service (no call is made), and
    the engine keeps no decision cache (admission inputs are never alike)."""
    from forge.policy import CachedEngine

    app = build_app(load_settings(prod_environ(tmp_path, OPA_URL="http://127.0.0.1:9")))
    state = app.state.spawn
    assert not isinstance(state.policy, CachedEngine)
    check = next(c for c in state.ctx.readiness._checks if c.name == "policy")
    detail = check.fn()
    assert detail.startswith(f"policy hash {state.policy.policy_hash} (not pinned)")
    assert "not verified here" in detail
    local = build_app(load_settings(prod_environ(tmp_path / "local")))
    assert not isinstance(local.state.spawn.policy, CachedEngine)
