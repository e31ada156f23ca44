"""The shipped templates: valid, gated by policy for exactly the plans that carry their
track, random per scenario, and solved by scripts that discover rather than know."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from forge.policy import EmbeddedEngine, build_training_input, decide_all
from forge.templates.registry import TemplateRegistry
from forge.templates.variables import generate_values, referenced_variables, render

from .conftest import SOLUTIONS, TEMPLATES

LABS = {"netplus": "foundation", "ccna": "intermediate", "cissp": "advanced"}
PLANS = {"FREE": ["netplus"], "PRO": ["netplus", "ccna"],
         "TEAM": ["netplus", "ccna", "cissp"], "ENTERPRISE": ["netplus", "ccna", "cissp"]}


@pytest.fixture(scope="module")
def registry() -> TemplateRegistry:
    return TemplateRegistry.load(TEMPLATES)


@pytest.fixture(scope="module")
def engine() -> EmbeddedEngine:
    return EmbeddedEngine()


def test_forge_template_check_passes_on_every_lab() -> None:
    files = sorted(str(p) for p in TEMPLATES.glob("*.yaml")
                   if not p.name.endswith(".lab-test.yaml"))
    assert len(files) >= 3  # the three original labs and the catalog's others
    result = subprocess.run([sys.executable, "-m", "forge", "template", "check", *files],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok") == len(files)


def test_labels_and_descriptions(registry: TemplateRegistry) -> None:
    assert {"ccna", "cissp", "netplus"} <= set(registry.names())
    for name, tier in LABS.items():
        t = registry.get(name).template
        assert (t.track, t.tier) == (name, tier)
        assert t.spec.network.egress == "deny"
        assert len(t.spec.description) > 800 and "Submit" in t.spec.description


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("name", sorted(LABS))
def test_policy_gates_allow_exactly_the_plans_with_the_track(
    registry: TemplateRegistry, engine: EmbeddedEngine, name: str, plan: str
) -> None:
    loaded = registry.get(name)
    doc = build_training_input(loaded.template, plan_name=plan, plan_tracks=PLANS[plan],
                               requested_track=name, template_sha256=loaded.sha256)
    decision = decide_all(engine, doc)
    if name in PLANS[plan]:
        assert decision.allow, decision.reasons
    else:
        assert not decision.allow
        assert any(f'does not include track "{name}"' in r for r in decision.reasons)


def test_only_the_ccna_routers_and_pcs_keep_a_capability(registry: TemplateRegistry) -> None:
    # The PCs' NET_ADMIN is for their start command (their office address, per scenario);
    # the learner has no terminal there.
    caps = {(name, c.name): c.capabilities for name in LABS
            for c in registry.get(name).template.spec.assets.containers if c.capabilities}
    assert caps == {("ccna", h): ("NET_ADMIN",) for h in ("learner", "r2", "pc-a", "pc-b")}
    learner_hosts = [c.name for c in registry.get("ccna").template.spec.assets.containers
                     if c.access == "learner"]
    assert learner_hosts == ["learner", "r2"]


# A Perl program a host's start command runs: ``/usr/bin/perl [OPTIONS] -e PROGRAM``,
# given as the command's own words or inside its shell script (PROGRAM quoted there, or
# the script's "$1").
PERL_IN_SCRIPT = re.compile(r"/usr/bin/perl((?:\s+-[^e\s]\S*)*)\s+-e\s+(?:'([^']*)'|\"\$1\")")


def perl_programs(argv: list[str]) -> list[tuple[list[str], str]]:
    """(options, program) of every Perl program ``argv`` starts."""
    found = []
    if argv[0] == "/usr/bin/perl" and "-e" in argv:
        at = argv.index("-e")
        found.append((argv[1:at], argv[at + 1]))
    if argv[:2] == ["/bin/sh", "-c"]:
        for match in PERL_IN_SCRIPT.finditer(argv[2]):
            found.append((match.group(1).split(), match.group(2) or argv[4]))
    return found


def test_shipped_perl_services_load_no_module_but_strict(registry: TemplateRegistry) -> None:
    # Every spawn pays the start of each service: the Socket module was ~6 of the ~9 ms
    # of CPU the netplus web server took to listen, so the servers use Linux's socket
    # numbers. Compiled by the machine's perl (-c: BEGIN and CHECK blocks only).
    programs = [(name, c.name, *prog) for name in registry.names()
                for c in registry.get(name).template.spec.assets.containers if c.command
                for prog in perl_programs(list(c.command))]
    assert {(name, host) for name, host, *_ in programs} >= {
        ("netplus", "target"), ("ccna", "learner"), ("ccna", "r2"), ("ccna", "pc-a"),
        ("ccna", "pc-b")}
    for name, host, options, program in programs:
        loaded = subprocess.run(
            ["/usr/bin/perl", *options, "-c", "-e",
             'CHECK { print join(" ", sort keys %INC), "\\n" }', "-e", program],
            capture_output=True, text=True, timeout=30, check=True).stdout.split()
        assert set(loaded) <= {"strict.pm"}, (name, host, loaded)


@pytest.mark.parametrize("name", sorted(LABS))
def test_every_variable_is_used_and_values_differ_per_scenario(
    registry: TemplateRegistry, name: str
) -> None:
    t = registry.get(name).template
    used = {var for _, var in referenced_variables(t)}
    assert used == set(t.spec.variables)
    first, second = generate_values(t), generate_values(t)
    assert first != second
    a, b = render(t, first), render(t, second)
    assert a.to_document() != b.to_document()


def test_cissp_grader_is_seeded_read_only_and_knows_no_answers(registry: TemplateRegistry) -> None:
    t = registry.get("cissp").template
    values = generate_values(t)
    rendered = render(t, values)
    learner = rendered.spec.assets.containers[0]
    checker = next(f.content for f in learner.files if f.path == "/opt/forge/check_register.py")
    compile(checker, "check_register.py", "exec")
    answers = (f"203.0.113.{values['attacker']}", f"198.51.100.{values['scanner']}",
               values["key_id"], values["key_secret"])
    for answer in answers:
        assert answer not in checker
    checks = [ch for c in rendered.spec.success_criteria for ch in c.checks]
    argv = " ".join(" ".join(ch.command) for ch in checks)
    stdin = " ".join(ch.stdin or "" for ch in checks)
    # Expected values reach the checker on stdin, never in a command line.
    assert f"203.0.113.{values['attacker']}" in stdin and values["key_id"] in stdin
    for answer in answers:
        assert answer not in argv


@pytest.mark.parametrize(("name", "fixed"), [
    ("netplus", ["10.61.2.23", "SN-"]),
    ("ccna", ["10.62.0.6", "10.62.0.1"]),
    ("cissp", ["203.0.113.", "AKEY"]),
])
def test_solutions_discover_instead_of_hard_coding(name: str, fixed: list[str]) -> None:
    script = (SOLUTIONS / f"{name}.sh").read_text()
    assert script.startswith("#!/bin/bash\n")
    for value in fixed:
        assert value not in script
