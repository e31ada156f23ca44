"""Each gate's allow is read off its positive checks, and its reasons are worded only for a
deny (issue 19 item 4). That is the decision made before (allow = every check passes AND no
reason) only if an input that passes the checks never has a reason: checked here on every
recorded and mutated input (tests/policy/corpus), for every gate the entries evaluate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forge.policy import EmbeddedEngine

CORPUS = Path(__file__).parent / "corpus"
WINDOW = 'data.forge.assignment.window_ok(object.get(input, "assignment", null))'

# gate -> (its positive checks, its reasons), as Rego over `input`; corpora it is judged on
CHECKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "training": ("data.forge.training.allowed(input)", "data.forge.training.reasons(input)",
                 ("training",)),
    "capabilities": ("data.forge.capabilities.allowed(input)",
                     "data.forge.capabilities.reasons(input)", ("capabilities", "training")),
    "spawn": ("data.forge.spawn.allowed(input)", "data.forge.spawn.reasons(input)",
              ("spawn",)),
    "spawn admission": (f"data.forge.spawn.admissible(input); {WINDOW}",
                        "data.forge.spawn.request_reasons(input) | "
                        "data.forge.assignment.window_reasons(input)", ("spawn",)),
    "assignment window": (WINDOW, "data.forge.assignment.window_reasons(input)",
                          ("assignment", "spawn")),
}


def _inputs(names: tuple[str, ...]) -> list[dict[str, Any]]:
    docs = []
    for name in names:
        for suffix in ("", "_mutated"):
            text = (CORPUS / f"{name}{suffix}.json").read_text()
            docs += [case["input"] for case in json.loads(text)["cases"]]
    return docs


@pytest.mark.parametrize("gate", sorted(CHECKS))
def test_an_input_passing_the_checks_has_no_reason(engine: EmbeddedEngine, gate: str) -> None:
    checks, reasons, names = CHECKS[gate]
    passing, wrong = 0, []
    for doc in _inputs(names):
        out = engine.query(f"p := [1 | {checks}]; x := [r | {checks}; r := {reasons}; "
                           "count(r) > 0]", doc)
        passing += len(out["bindings"]["p"])
        if out["bindings"]["x"]:
            wrong.append((doc, out["bindings"]["x"]))
    assert not wrong, wrong[:3]
    assert passing >= 20, f"only {passing} inputs pass the {gate} checks: the test is too thin"
