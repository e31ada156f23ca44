"""`make test` proves every shipped lab with `forge lab test`: untouched 0, reference 1.0,
declared partials and gaming attempts, the generic gaming attempts, distinct values.

This replaces the per-lab untouched/partial/gaming tests that tests/labs ran through the
whole platform; tests/labs keeps one end-to-end run per lab (bus, scoreboard, signed
verdict)."""

from __future__ import annotations

import pytest

from forge.content import content_path
from forge.templates import TemplateRegistry

from .conftest import Forge

pytestmark = pytest.mark.root
SHIPPED = TemplateRegistry.load(content_path("templates")).names()


@pytest.mark.parametrize("name", SHIPPED)
def test_forge_lab_test_proves_the_shipped_lab(forge: Forge, name: str) -> None:
    # Four labs at a time: the steps mostly wait on check timeouts, so 4 halves the wall
    # time of the default 2 on this 2-core machine (all twelve: 109 s -> 48 s).
    result = forge("lab", "test", "--jobs", "4", name)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"forge lab test {name}: PASS" in out
    for step in ("untouched", "reference solution", "per-scenario values differ",
                 "generic: tamper with grader files",
                 "generic: background process into grading"):
        assert step in out, f"{name}: no {step!r} step\n{out}"
    assert "FAIL" not in out
    assert "1/1 labs passed" in out
