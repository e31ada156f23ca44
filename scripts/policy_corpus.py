"""Generate the recorded policy corpus: inputs for every gate and the decisions made on them.

    .venv/bin/python scripts/policy_corpus.py [--out tests/policy/corpus]

Inputs come from the shipped templates and plans, crossed with track, tier, capability,
limit, egress, quota, identity and assignment variations chosen so that every deny reason
of every package appears. The decisions (allow + reasons, exactly as `engine.decide`
answers) were recorded with the policies in force before the issue-19 rewrite, so
`tests/policy/test_corpus.py` proves a rewrite decides identically. Re-run it only on
purpose: it overwrites the recorded decisions with those of the current policies.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
from pathlib import Path
from typing import Any

from forge.content import content_path
from forge.plans import load_plans
from forge.policy import EmbeddedEngine, PolicyBundle, build_spawn_input, build_training_input
from forge.templates.registry import TemplateRegistry

ROOT = Path(__file__).resolve().parents[1]
Doc = dict[str, Any]
CAPS = ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE", "SYS_PTRACE", "SYS_ADMIN", "BPF", "CHOWN"]


def training_inputs() -> list[Doc]:
    """Every shipped template under every plan, then one mutation per training reason."""
    registry = TemplateRegistry.load(content_path("templates"))
    catalog = load_plans(content_path("plans.yaml"))
    docs: list[Doc] = []
    for loaded in registry:
        t = loaded.template
        for plan in catalog:
            docs.append(build_training_input(
                t, plan_name=plan.name, plan_tracks=list(plan.tracks),
                requested_track=str(t.track), template_sha256=loaded.sha256))
    base = build_training_input(registry.get("ccna").template, plan_name="PRO",
                                plan_tracks=["netplus", "ccna"], requested_track="ccna")

    def mut(path: list[str], value: Any) -> Doc:
        d = copy.deepcopy(base)
        node = d
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if value is _DROP:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
        return d

    variants: list[tuple[list[str], Any]] = [
        (["template", "track"], "banana"), (["template", "track"], None),
        (["request", "track"], "netplus"), (["request", "track"], "banana"),
        (["request", "template"], "other"), (["template", "name"], 7),
        (["plan", "name"], "GOLD"), (["plan", "name"], "pro"), (["plan", "name"], None),
        (["plan", "tracks"], ["netplus"]), (["plan", "tracks"], "ccna"), (["plan", "tracks"], []),
        (["template", "tier"], "expert"), (["template", "tier"], "advanced"),
        (["template", "tier"], None),
        (["template", "network", "egress"], "open"), (["template", "network", "egress"], None),
        (["template", "network", "egress"], "allowlist"),
        (["template", "network"], {"egress": "allowlist", "allowlist_profile": "internet"}),
        (["template", "network"], {"egress": "allowlist", "allowlist_profile": "package-mirrors"}),
        (["template", "limits"], _DROP), (["template", "limits"], "none"),
        (["template"], _DROP), (["request"], _DROP), (["plan"], _DROP),
    ]
    for key in ("cpu", "memory_mb", "pids", "timeout_minutes", "attacker_max_exploits"):
        variants += [(["template", "limits", key], v) for v in (_DROP, "1", 0, -1, 10**6, 1.5)]
    variants += [(["template", "limits", "attacker_max_exploits"], n) for n in (5, 10, 11, 21, 101)]
    docs += [mut(p, v) for p, v in variants]
    docs.append({})
    rng = random.Random(19)
    for _ in range(40):  # random combinations of several mutations at once
        d = copy.deepcopy(base)
        for p, v in rng.sample(variants, 3):
            node = d
            for key in p[:-1]:
                node = node.setdefault(key, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                if v is _DROP:
                    node.pop(p[-1], None)
                else:
                    node[p[-1]] = copy.deepcopy(v)
        docs.append(d)
    return docs


class _Drop:
    """Marker: remove the field instead of setting it."""


_DROP = _Drop()


def capability_inputs() -> list[Doc]:
    """Each track/tier (and unknown ones) with capability sets, privileged or not."""
    docs: list[Doc] = []
    for track in ("netplus", "ccna", "cissp", "banana", None):
        for tier in ("foundation", "intermediate", "advanced", "expert"):
            for caps in ([], ["NET_RAW"], ["NET_ADMIN", "NET_RAW"], ["NET_BIND_SERVICE"],
                         ["SYS_PTRACE"], ["SYS_ADMIN", "NET_RAW"], ["CHOWN"]):
                docs.append({"template": {"name": "lab", "track": track, "tier": tier,
                                          "containers": [
                                              {"name": "learner", "capabilities": caps},
                                              {"name": "target", "capabilities": []}]}})
    docs += [
        {"template": {"track": "ccna", "tier": "intermediate", "containers": "x"}},
        {"template": {"track": "ccna", "tier": "intermediate",
                      "containers": [{"name": 3, "capabilities": []}]}},
        {"template": {"track": "ccna", "tier": "intermediate",
                      "containers": [{"name": "a", "capabilities": "NET_RAW"}]}},
        {"template": {"track": "ccna", "tier": "intermediate"}},
        {"template": {"track": "ccna", "tier": "advanced",
                      "containers": [{"name": "a", "capabilities": [3, "BPF"]}]}},
        {},
    ]
    return docs


def _assignment(now: Any, used: Any, allowed: Any = 2, hints: Any = True) -> Doc:
    return {"id": "asg-1", "now_s": now, "opens_at": "2026-12-01T09:00:00Z",
            "opens_at_s": 1000, "closes_at": "2026-12-01T10:00:00Z", "closes_at_s": 2000,
            "attempts": {"allowed": allowed, "used": used}, "hints_allowed": hints}


ASSIGNMENTS: list[Any] = [
    _assignment(1500, 0), _assignment(999, 0), _assignment(1000, 0), _assignment(2000, 0),
    _assignment(1500, 2), _assignment(999, 2), _assignment(2500, 5, 1, False),
    _assignment("soon", 0), _assignment(1500, -1), _assignment(1500, 0, None),
    {"id": "asg-2"}, "not-an-object", 12, [1],
]


def spawn_inputs() -> list[Doc]:
    """Request shape, identity, plan, quota and assignment variations of the spawn gate."""
    docs: list[Doc] = []
    for track in ("netplus", "ccna", "cissp", "banana"):
        for plan, tracks in (("FREE", ["netplus"]), ("PRO", ["netplus", "ccna"]),
                             ("TEAM", ["netplus", "ccna", "cissp"]), ("X", "ccna")):
            docs.append(build_spawn_input(
                request_id="req-00000001", track=track, subject="alice", tenant="acme",
                plan_name=plan, plan_tracks=tracks, concurrent_limit=3,  # type: ignore[arg-type]
                concurrent_used=1, rate_limit_per_minute=10, rate_used=2))
    good = build_spawn_input(request_id="req-00000001", track="ccna", subject="alice",
                             tenant="acme", plan_name="PRO", plan_tracks=["netplus", "ccna"],
                             concurrent_limit=3, concurrent_used=0, rate_limit_per_minute=10,
                             rate_used=0)
    for rid in ("short", "../x-yyyyyyy", "a" * 65, 12345678, None, "req.ok_1-x"):
        docs.append({**good, "request": {"request_id": rid, "track": "ccna"}})
    for field in ("subject", "tenant"):
        for v in ("", None, 5, "bob"):
            docs.append({**good, field: v})
    for cu, cl, ru, rl in ((2, 3, 9, 10), (3, 3, 0, 10), (0, 3, 10, 10), (4, 3, 11, 10),
                           (0, 0, 0, 0), ("1", 3, 0, 10), (-1, 3, 0, 10), (0, 3, 0.5, 10)):
        docs.append({**good, "quota": {"concurrent": {"used": cu, "limit": cl},
                                       "rate": {"used": ru, "limit_per_minute": rl}}})
    docs.append({**good, "quota": {"concurrent": {"limit": 3}}})
    docs.append({k: v for k, v in good.items() if k != "quota"})
    for a in ASSIGNMENTS:
        docs.append({**good, "assignment": a})
        docs.append({**good, "assignment": a, "quota": {"concurrent": {"used": 3, "limit": 3},
                                                        "rate": {"used": 0,
                                                                 "limit_per_minute": 10}}})
    docs.append({})
    return docs


def assignment_inputs() -> list[Doc]:
    """Both actions (and an unknown one) with and without each assignment variation."""
    docs: list[Doc] = []
    for action in ("spawn", "reveal_hint", "grade", None):
        docs.append({} if action is None else {"action": action})
        for a in ASSIGNMENTS:
            doc: Doc = {"assignment": a}
            if action is not None:
                doc["action"] = action
            docs.append(doc)
    docs.append({"action": "reveal_hint", "assignment": _assignment(1500, 0, 2, "yes")})
    docs.append({"action": "reveal_hint", "assignment": {"hints_allowed": False}})
    return docs


BUILDERS = {
    "forge.training": training_inputs,
    "forge.capabilities": capability_inputs,
    "forge.spawn": spawn_inputs,
    "forge.assignment": assignment_inputs,
}


def record(out: Path) -> None:
    """Write one corpus file per package: inputs and the current policies' decisions."""
    engine = EmbeddedEngine(PolicyBundle.load(content_path("policies")))
    out.mkdir(parents=True, exist_ok=True)
    for package, build in BUILDERS.items():
        cases = []
        for doc in build():
            d = engine.decide(package, doc)
            cases.append({"input": doc, "allow": d.allow, "reasons": d.reasons})
        body = {"package": package, "recorded_with_policy_hash": engine.policy_hash,
                "cases": cases}
        name = package.split(".")[-1]
        (out / f"{name}.json").write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        allowed = sum(c["allow"] for c in cases)
        print(f"{package}: {len(cases)} inputs ({allowed} allowed)")


def main() -> None:
    """Record the corpus into --out."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "policy" / "corpus")
    record(ap.parse_args().out)


if __name__ == "__main__":
    main()
