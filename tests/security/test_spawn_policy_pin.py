"""spawn_service decides assignment windows and hints with the policy bundle (package
`forge.assignment`), so the operator's pin applies to it as to the orchestrator. Before: it
loaded the bundle at its first assigned spawn without checking OPA_POLICY_HASH, so an
unreviewed bundle decided windows. After: a pin of another bundle stops it at start,
showing both hashes; the reviewed bundle's hash starts it."""

from __future__ import annotations

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
