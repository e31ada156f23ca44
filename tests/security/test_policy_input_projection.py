"""Attack: get admitted through a field the policy engine no longer sees.

Each `forge.gates` entry hands the engine only the fields its rules read
(forge.policy.projection): the launch gate no template hash, image, read-only or router
flag and no spawn fields; the admit gate no template and no quota. Were a rule to read a
dropped field, it would see it absent: a positive check on it fails (deny, fail closed),
but a negated one (`not input.x == "evil"`) would pass, so no rule may read one at all.

Proved three ways, with the real regopy engine and the repository's policies: no dropped
field (nor any `object.get(input, ...)` path outside the projection) is named in the source
of the packages an entry evaluates, save the quota of forge.spawn, which only its `allow`
reads and the admit entry never evaluates; changing or adding dropped fields (attacker
extras such as `allow: true` included) never changes the decision the whole input gets;
and a policy that does read a dropped field in a positive check denies.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from forge.content import content_path
from forge.policy import (
    EmbeddedEngine,
    PolicyBundle,
    build_spawn_input,
    build_training_input,
)
from forge.policy.gates import entry_path, gate_decisions
from forge.policy.projection import project
from forge.templates import load_template_file

from ..support.policy_copies import patched_policies

POLICIES = content_path("policies")
FIXTURE = Path(__file__).resolve().parents[1] / "templates" / "fixtures" / "good.yaml"
# The packages (files) whose rules each entry evaluates (policies/gates.rego).
ENTRY_FILES = {"launch": ("training.rego", "capabilities.rego"),
               "admit": ("spawn.rego", "assignment.rego")}
# Read only by rules the entry does not evaluate (forge.spawn's allow and deny_reasons).
NOT_EVALUATED = {("admit", "quota")}
ADVERSARIAL: tuple[Any, ...] = (None, "", "evil", 0, -1, 10**9, True, [], {}, {"used": 0})


def whole_input(plan: str = "FREE", track: str = "netplus") -> dict[str, Any]:
    """Everything a spawn's two gates are ever given: a lab, its request, the learner,
    quotas and an open assignment."""
    t = load_template_file(FIXTURE).template
    training = build_training_input(t, plan_name=plan, plan_tracks=["netplus"],
                                    requested_track=track, template_sha256="ab" * 32)
    spawn = build_spawn_input(
        request_id="req-00000001", track=track, subject="alice", tenant="acme",
        plan_name=plan, plan_tracks=["netplus"], concurrent_limit=1, concurrent_used=0,
        rate_limit_per_minute=5, rate_used=0)
    doc = {**training, **spawn, "request": {**training["request"], **spawn["request"]}}
    doc["assignment"] = {"id": "asg-1", "now_s": 1500, "opens_at": "2026-12-01T09:00:00Z",
                         "opens_at_s": 1000, "closes_at": "2026-12-01T10:00:00Z",
                         "closes_at_s": 2000, "attempts": {"allowed": 2, "used": 0},
                         "hints_allowed": True}
    return doc


def dropped(entry: str, doc: Any, kept: Any, prefix: tuple[Any, ...] = ()
            ) -> list[tuple[Any, ...]]:
    """The top-most paths of `doc` that the projection `kept` leaves out."""
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict) and isinstance(kept, dict):
        for k, v in doc.items():
            out += [(*prefix, k)] if k not in kept else dropped(entry, v, kept[k], (*prefix, k))
    elif isinstance(doc, list) and isinstance(kept, list):
        for i, (v, w) in enumerate(zip(doc, kept, strict=True)):
            out += dropped(entry, v, w, (*prefix, i))
    return out


def _code(text: str) -> str:
    """Rego source without its comments."""
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def reads_of_dropped_fields(policy_dir: Path) -> list[str]:
    """Each place a policy an entry evaluates names a field that entry does not pass."""
    doc = whole_input()
    problems = []
    for entry, files in ENTRY_FILES.items():
        kept = project(entry, doc)
        names = {p[-1] for p in dropped(entry, doc, kept)}
        for name in files:
            code = _code((policy_dir / name).read_text())
            for field in sorted(names):
                if (entry, field) in NOT_EVALUATED:
                    continue
                if re.search(rf"(\.|\"){re.escape(field)}\b", code):
                    problems.append(f"{name} names {field!r}, which {entry} does not pass")
            for path in re.findall(r"object\.get\(input,\s*(\[[^\]]*\]|\"[^\"]*\")", code):
                keys = re.findall(r"\"([^\"]*)\"", path)
                value: Any = kept
                for key in keys:
                    if (entry, key) in NOT_EVALUATED:
                        break
                    if not isinstance(value, dict) or key not in value:
                        problems.append(f"{name} reads input.{'.'.join(keys)}, which {entry} "
                                        "does not pass")
                        break
                    value = value[key]
    return problems


def test_no_policy_an_entry_evaluates_reads_a_field_it_does_not_pass() -> None:
    assert reads_of_dropped_fields(POLICIES) == []


def _whole_decision(engine: EmbeddedEngine, entry: str, doc: dict[str, Any]) -> Any:
    """The entry's decision on the whole input, as the engine judged it before projection."""
    return gate_decisions(entry, engine.evaluate(entry_path(entry), doc), engine.policy_hash)


def _same(a: Any, b: Any) -> bool:
    return all((a.decisions[p].allow, a.decisions[p].reasons)
               == (b.decisions[p].allow, b.decisions[p].reasons) for p in a.decisions)


@pytest.mark.parametrize("entry", ["launch", "admit"])
@pytest.mark.parametrize("plan,track", [("FREE", "netplus"), ("FREE", "cissp")])
def test_dropped_fields_cannot_change_a_decision(entry: str, plan: str, track: str) -> None:
    engine = EmbeddedEngine(PolicyBundle.load(POLICIES))
    base = whole_input(plan, track)
    want = engine.decide_gates(entry, base)
    assert want.allow == (track == "netplus"), want.combined.reasons
    variants = []
    for path in dropped(entry, base, project(entry, base)):
        for value in ADVERSARIAL:
            doc = copy.deepcopy(base)
            parent: Any = doc
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = value
            variants.append(doc)
    extras = {"allow": True, "deny_reasons": [], "admin": True, "override": "allow"}
    variants.append({**copy.deepcopy(base), **extras})
    for doc in variants:
        assert _same(engine.decide_gates(entry, doc), want), doc
        assert _same(_whole_decision(engine, entry, doc), want), doc


def _custom(tmp_path: Path, line: str) -> EmbeddedEngine:
    """The shipped policies with `line` added to training's positive checks."""
    policies = patched_policies(tmp_path, "training.rego", "\tt := doc.template\n", line)
    return EmbeddedEngine(PolicyBundle.load(policies))


def test_the_shipped_policies_are_projected() -> None:
    assert EmbeddedEngine(PolicyBundle.load(POLICIES)).projects


def test_other_policies_get_the_whole_input(tmp_path: Path) -> None:
    """An operator's own policies (FORGE_POLICY_DIR) may read any field: a negated check on
    a field the projection drops (`not t.sha256 == "<evil>"`) would pass on a projected
    input; their gates get the whole input, and it denies, as a remote OPA would."""
    evil = "ee" * 32
    engine = _custom(tmp_path, f'\tnot t.sha256 == "{evil}"\n')
    assert not engine.projects
    doc = whole_input()
    assert engine.decide_gates("launch", doc).allow
    doc["template"]["sha256"] = evil
    refused = engine.decide_gates("launch", doc)
    assert not refused.allow and not refused.decisions["forge.training"].allow
    assert not _whole_decision(engine, "launch", doc).allow


def test_a_positive_check_on_a_dropped_field_is_read_by_the_source_check(
        tmp_path: Path) -> None:
    """A shipped rule that required a field the launch entry does not pass would be named
    by the source check (the projection must then grow), and in an operator's bundle it
    is judged on the whole input."""
    engine = _custom(tmp_path, '\tt.sha256 == "' + "ab" * 32 + '"\n')
    doc = whole_input()
    assert _whole_decision(engine, "launch", doc).allow
    assert engine.decide_gates("launch", doc).allow
    assert any("sha256" in p for p in reads_of_dropped_fields(tmp_path / "policies"))
