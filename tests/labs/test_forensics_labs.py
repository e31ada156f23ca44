"""The forensics and response labs (log-forensics, password-cracking, incident-response):
each is labelled for the cissp track at its tier, runs every host on the `forensics`
image, uses every variable, sends expected values to its graders on stdin only, keeps
the values that are answers out of every command line the learner's host can see, and
ships a solution that discovers instead of knowing."""

from __future__ import annotations

import pytest

from forge.templates.registry import TemplateRegistry
from forge.templates.variables import generate_values, referenced_variables, render

from .conftest import SOLUTIONS, TEMPLATES

LABS = {"log-forensics": "foundation", "password-cracking": "intermediate",
        "incident-response": "advanced"}
# Values of the template a solution must find in the lab, never write down.
FIXED = {"log-forensics": ["10.64.1.5", "5140"], "password-cracking": ["10.65.1.20"],
         "incident-response": ["10.66.1.77", ".fc-", "/home/bin", "web01-", ".profile"]}


@pytest.fixture(scope="module")
def registry() -> TemplateRegistry:
    return TemplateRegistry.load(TEMPLATES)


@pytest.mark.parametrize("name", sorted(LABS))
def test_track_tier_image_and_terminal(registry: TemplateRegistry, name: str) -> None:
    t = registry.get(name).template
    assert (t.track, t.tier) == ("cissp", LABS[name])
    assert {c.image for c in t.spec.assets.containers} == {"forensics"}
    assert t.learner_hosts == ("learner",)
    assert not any(c.capabilities for c in t.spec.assets.containers)
    assert "Submit" in t.spec.description and 2 <= len(t.spec.hints) <= 4


@pytest.mark.parametrize("name", sorted(LABS))
def test_values_reach_graders_on_stdin_and_differ_per_scenario(registry: TemplateRegistry,
                                                               name: str) -> None:
    t = registry.get(name).template
    assert {var for _, var in referenced_variables(t)} == set(t.spec.variables)
    values = generate_values(t)
    rendered = render(t, values)
    checks = [ch for c in rendered.spec.success_criteria for ch in c.checks]
    argv = "\n".join("\n".join(ch.command) for ch in checks)
    for value in values.values():
        if len(value) >= 6:  # long enough not to occur by chance
            assert value not in argv
    assert render(t, generate_values(t)).to_document() != rendered.to_document()


@pytest.mark.parametrize("name", ["log-forensics", "password-cracking"])
def test_answers_live_only_on_hosts_without_a_terminal(registry: TemplateRegistry,
                                                       name: str) -> None:
    """The generator and the portal get the answers in their host's environment (never as
    arguments, which any local user of the machine may read: red team BX), on a host the
    learner has no terminal on, so nothing in the learner's host can show them."""
    t = registry.get(name).template
    for host in t.spec.assets.containers:
        assert not any("{{" in arg for arg in host.command or ()), host.name
        text = " ".join(host.environment.values()) + " ".join(f.content for f in host.files)
        assert ("{{" in text) == (host.access == "none"), host.name


@pytest.mark.parametrize("name", sorted(LABS))
def test_solutions_discover_instead_of_hard_coding(name: str) -> None:
    script = (SOLUTIONS / f"{name}.sh").read_text()
    assert script.startswith("#!/bin/bash\n")
    for value in FIXED[name]:
        assert value not in script, value
