"""The orchestrator judges the lab the learner chose: a spawn event names a template that is
not its track's default, and the training gate gets that template's tier (real
orchestrator, nats-server, SQLite and PostgreSQL; templates of tests/support/lab_catalog)."""

from __future__ import annotations

from pathlib import Path

from ..support.lab_catalog import lab_catalog_dir
from .conftest import MakeOrch, spawn_event


def test_the_gate_judges_the_chosen_labs_tier(make_orch: MakeOrch, tmp_path: Path) -> None:
    orch = make_orch(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    # netplus-advanced is a lab of a track PRO includes, at a tier PRO lacks: had the gate
    # judged the track's default lab (netplus, foundation) it would have let it run.
    event = spawn_event(orch.settings, template="netplus-advanced", track="netplus",
                        plan="PRO", tracks=["netplus", "ccna"])
    orch.publish("forge.spawn.requested", event)
    row = orch.wait_state(event["scenario_id"], "failed", "running")
    assert row.state == "failed" and row.template_id == "netplus-advanced"
    policy = row.details["policy"]
    assert policy["input"]["template"]["name"] == "netplus-advanced"
    assert policy["input"]["template"]["tier"] == "advanced"
    assert any('tier "advanced" is not allowed on plan PRO' in r for r in policy["reasons"])
    assert orch.runtime.list() == []
