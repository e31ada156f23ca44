"""The rewritten policies decide exactly as the old ones on the recorded corpus.

`tests/policy/corpus/<package>.json` holds 426 inputs over every gate and every deny
reason, with the decisions (allow and reasons, exactly) the policies made before the
issue-19 rewrite (recorded by `scripts/policy_corpus.py`); `<package>_mutated.json` 2076
variants of them with one field changed or removed (tests/policy/mutations.py), with the
decisions made before item 4's rewrite. Each package is evaluated alone and through the
one-query entries of `forge.gates` (which hand the engine only the fields an entry reads),
which must answer the same decisions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forge.policy import EmbeddedEngine

CORPUS = Path(__file__).parent / "corpus"
PACKAGES = ("training", "capabilities", "spawn", "assignment")
CORPORA = (*PACKAGES, *(f"{p}_mutated" for p in PACKAGES))


def _cases(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((CORPUS / f"{name}.json").read_text())["cases"]
    return cases


def test_corpus_covers_every_package_with_enough_inputs() -> None:
    counts = {name: len(_cases(name)) for name in PACKAGES}
    assert sum(counts.values()) >= 200, counts
    for name in PACKAGES:
        outcomes = {c["allow"] for c in _cases(name)}
        assert outcomes == {True, False}, name


@pytest.mark.parametrize("name", CORPORA)
def test_each_package_decides_as_recorded(engine: EmbeddedEngine, name: str) -> None:
    package = f"forge.{name.removesuffix('_mutated')}"
    wrong = []
    for i, case in enumerate(_cases(name)):
        d = engine.decide(package, case["input"])
        if (d.allow, d.reasons) != (case["allow"], case["reasons"]):
            wrong.append((i, case["allow"], case["reasons"], d.allow, d.reasons))
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("suffix", ["", "_mutated"])
def test_one_query_answers_every_gate_as_recorded(engine: EmbeddedEngine, suffix: str) -> None:
    """forge.gates.launch / all (`all`: test-only) give each package's recorded decision
    in one evaluation, over only the fields the entry reads."""
    wrong = []
    for name, entry in (("training", "launch"), ("capabilities", "launch"), ("spawn", "all")):
        for i, case in enumerate(_cases(name + suffix)):
            d = engine.decide_gates(entry, case["input"]).decisions[f"forge.{name}"]
            if (d.allow, d.reasons) != (case["allow"], case["reasons"]):
                wrong.append((name, i, case["reasons"], d.reasons))
    assert not wrong, wrong[:5]


QUOTA_REASONS = ("quota.", "concurrent scenario quota reached", "spawn rate limit reached")


@pytest.mark.parametrize("suffix", ["", "_mutated"])
def test_admit_answers_the_recorded_spawn_decision_without_quotas(
        engine: EmbeddedEngine, suffix: str) -> None:
    """forge.gates.admit (spawn_service's one query) on every recorded spawn input: the
    recorded reasons without the quota ones (the store's limiter enforces quotas), and
    allowed exactly when none remain."""
    wrong = []
    for i, case in enumerate(_cases("spawn" + suffix)):
        want = [r for r in case["reasons"] if not r.startswith(QUOTA_REASONS)]
        d = engine.decide_gates("admit", case["input"]).decisions["forge.spawn"]
        if (d.allow, d.reasons) != (not want, want):
            wrong.append((i, want, d.allow, d.reasons))
    assert not wrong, wrong[:5]


def test_combined_decision_needs_every_gate(engine: EmbeddedEngine) -> None:
    """`all` on one document holding a training and a spawn input: allowed only when both
    gates allow; reasons prefixed with their package, in package order."""
    training = next(c for c in _cases("training") if c["allow"])["input"]
    spawn = next(c for c in _cases("spawn") if c["allow"])["input"]
    doc = {**training, **spawn, "request": {**training["request"], **spawn["request"]}}
    doc["plan"] = training["plan"]
    doc["request"]["track"] = training["request"]["track"]
    both = engine.decide_gates("all", doc)
    assert both.allow and both.combined.reasons == [], both
    late = {**doc, "assignment": next(c for c in _cases("spawn")
                                      if any("closed at" in r for r in c["reasons"])
                                      )["input"]["assignment"]}
    refused = engine.decide_gates("all", late)
    assert not refused.allow
    assert refused.decisions["forge.training"].allow
    assert refused.combined.reasons == [
        f"forge.spawn: {r}" for r in refused.decisions["forge.spawn"].reasons]
    assert any(" closed at " in r for r in refused.combined.reasons)
