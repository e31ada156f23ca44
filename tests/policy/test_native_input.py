"""The engine's input built with regopy's C API (forge.policy.native_input) is the document
the caller gave, exactly; what it cannot carry exactly goes as JSON text instead."""

from __future__ import annotations

from typing import Any

import pytest

from forge.policy import EmbeddedEngine
from forge.policy.native_input import native_input

DOCS: list[dict[str, Any]] = [
    {},
    {"a": 1, "b": -2**63, "c": 2**63 - 1, "d": 0.5, "e": True, "f": False, "g": None},
    {"text": "plain", "unicode": "héllo wörld ✓", "empty": "", "list": [1, "x", [2, {"y": None}]]},
    {"nested": {"deep": {"deeper": {"tracks": ["netplus", "ccna"]}}}, "tuple": (1, 2)},
]


@pytest.mark.parametrize("doc", DOCS)
def test_the_engine_sees_the_document_given(engine: EmbeddedEngine, doc: dict[str, Any]) -> None:
    assert native_input(doc) is not None
    out = engine.query("x := input", doc)
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in doc.items()}
    assert out["bindings"]["x"] == want


@pytest.mark.parametrize("doc", [{"n": 2**63}, {"n": -2**63 - 1}, {"s": "\ud800"},
                                 {"deep": [{"n": 2**64}]}])
def test_values_native_input_would_not_carry_exactly_go_as_json(
        engine: EmbeddedEngine, doc: dict[str, Any]) -> None:
    """ctypes would silently truncate an integer beyond 64 bits (2**64 would become 0, a
    quota count that admits); such a document is declined and sent as JSON text."""
    assert native_input(doc) is None
    if "n" in doc:
        assert engine.query("x := input.n", doc)["bindings"]["x"] == doc["n"]


def test_a_huge_count_is_not_read_as_zero(engine: EmbeddedEngine) -> None:
    """An assignment whose attempts-used count is 2**64 is refused, not read as 0 used."""
    doc = {"action": "spawn", "assignment": {
        "id": "asg-1", "now_s": 1500, "opens_at": "a", "opens_at_s": 1000, "closes_at": "b",
        "closes_at_s": 2000, "attempts": {"allowed": 2, "used": 2**64}, "hints_allowed": True}}
    assert not engine.decide("forge.assignment", doc).allow


@pytest.mark.parametrize("value", [1.0000004, -4e-7, 2.5e-6, 1e-7, 1 + 2**-40, 3.14159265358979])
def test_a_float_six_decimals_do_not_hold_goes_as_json(engine: EmbeddedEngine,
                                                         value: float) -> None:
    """The C API writes a float as `%f` text: 1.0000004 (a cpu limit just over a plan's
    ceiling) would be judged as 1, and -4e-7 (a count just below 0) as -0."""
    doc = {"f": value}
    assert native_input(doc) is None
    # What a policy's checks see (the engine prints at most 16 digits, so not its output)
    seen = engine.query("x := [input.f > 1, input.f < 0, input.f == 0, input.f == 1]", doc)
    assert seen["bindings"]["x"] == [value > 1, value < 0, value == 0, value == 1]


def test_a_str_subclass_reaches_the_engine_as_its_content(engine: EmbeddedEngine) -> None:
    """What the input was checked and cached on (the string's content), not its str()."""

    class Shown(str):
        def __str__(self) -> str:
            return "admin"

    doc = {"s": Shown("alice")}
    assert native_input(doc) is None
    assert engine.query("x := input.s", doc)["bindings"]["x"] == "alice"
