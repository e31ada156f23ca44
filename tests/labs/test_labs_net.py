"""The network labs of issue 16 (dns-zone, nft-firewall, vlan-segment): catalogued on
their track and tier, admitted by the policy gates (capabilities included) for exactly
the plans that carry their track and tier, random per scenario, every expected value on a check's
stdin and never in its command line, and solved by scripts that discover rather than
know. Their behaviour under the real runtime is `forge lab test` (tests/authoring)."""

from __future__ import annotations

import pytest

from forge.policy import EmbeddedEngine, build_training_input, decide_all
from forge.templates.registry import TemplateRegistry
from forge.templates.variables import generate_values, referenced_variables, render

from .conftest import SOLUTIONS, TEMPLATES

LABS = {"dns-zone": ("netplus", "intermediate", "dns"),
        "nft-firewall": ("ccna", "advanced", "router"),
        "vlan-segment": ("ccna", "intermediate", "router")}
PLANS = {"FREE": ["netplus"], "PRO": ["netplus", "ccna"], "TEAM": ["netplus", "ccna", "cissp"]}
TIERS = {"FREE": {"foundation"}, "PRO": {"foundation", "intermediate"},
         "TEAM": {"foundation", "intermediate", "advanced"}}
CAPS = {"dns-zone": {},
        "nft-firewall": {"learner": ("NET_ADMIN",)},
        "vlan-segment": {h: ("NET_ADMIN",) for h in ("learner", "pc1", "pc2", "pc3", "pc4")}}


@pytest.fixture(scope="module")
def registry() -> TemplateRegistry:
    return TemplateRegistry.load(TEMPLATES)


@pytest.mark.parametrize("name", sorted(LABS))
def test_catalogued_on_its_track_with_every_host_on_an_image(
    registry: TemplateRegistry, name: str
) -> None:
    t = registry.get(name).template
    track, tier, image = LABS[name]
    assert (t.track, t.tier) == (track, tier)
    assert t.spec.network.egress == "deny"
    assert "Submit" in t.spec.description and 2 <= len(t.spec.hints) <= 4
    assert t.learner_hosts == ("learner",)
    assert {c.image for c in t.spec.assets.containers} == {image}
    caps = {c.name: c.capabilities for c in t.spec.assets.containers if c.capabilities}
    assert caps == CAPS[name]


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("name", sorted(LABS))
def test_policy_gates_allow_exactly_the_plans_with_the_track_and_tier(
    registry: TemplateRegistry, name: str, plan: str
) -> None:
    loaded = registry.get(name)
    track, tier, _ = LABS[name]
    doc = build_training_input(loaded.template, plan_name=plan, plan_tracks=PLANS[plan],
                               requested_track=track, template_sha256=loaded.sha256)
    decision = decide_all(EmbeddedEngine(), doc)
    assert decision.allow == (track in PLANS[plan] and tier in TIERS[plan]), decision.reasons
    # The capabilities gate approves the switch's and the router's NET_ADMIN.
    assert not any("capabilit" in r for r in decision.reasons), decision.reasons


@pytest.mark.parametrize("name", sorted(LABS))
def test_values_differ_and_reach_checks_only_on_stdin(
    registry: TemplateRegistry, name: str
) -> None:
    t = registry.get(name).template
    assert {var for _, var in referenced_variables(t)} == set(t.spec.variables)
    values = generate_values(t)
    assert values != generate_values(t)
    rendered = render(t, values)
    checks = [ch for c in rendered.spec.success_criteria for ch in c.checks]
    argv = "\n".join(" ".join(ch.command) for ch in checks)
    stdin = "\n".join(ch.stdin or "" for ch in checks)
    # No value enters a command line: the rendered commands are the template's own. (A
    # value "not in" them is no test: vlan_eng may be 100, as in 10.66.100.1.)
    raw = "\n".join(" ".join(ch.command) for c in t.spec.success_criteria for ch in c.checks)
    assert "{{" not in raw and argv == raw
    assert any(v in stdin for v in values.values())


@pytest.mark.parametrize(("name", "fixed"), [
    ("dns-zone", ["10.64.2", "10.64.1.53 acme.lab TXT", "backup-0"]),
    ("nft-firewall", ["tcp dport 8", "tcp dport 22"]),
    ("vlan-segment", ["vlan1", "vlan2", "eth0: pc", "engineering) v"]),
])
def test_solutions_discover_instead_of_hard_coding(name: str, fixed: list[str]) -> None:
    script = (SOLUTIONS / f"{name}.sh").read_text()
    assert script.startswith("#!/bin/bash\n")
    for value in fixed:
        assert value not in script
