"""netplus end to end: find a web server behind a router and collect what it serves.

Criteria (weights): find-server 1, save-page 2, inventory-serial 1 (total 4).

Untouched, partial and gaming runs are proven by `forge lab test`
(tests/authoring/test_shipped_labs.py, plan in templates/netplus.lab-test.yaml); this file
keeps what goes through the whole platform (bus, scoreboard, signed verdict).
"""

from __future__ import annotations

import pytest

from .conftest import Platform

pytestmark = pytest.mark.root


def test_reference_solution_scores_one(platform: Platform) -> None:
    solved: list[str] = []
    out = platform.play("netplus", lambda lab: solved.append(lab.solve("netplus").stdout_text))
    assert out.score["score"] == 1.0, out.score
    assert all(out.passed().values())
    # The solution found this lab's random port and code on the network.
    assert f"10.61.2.23:{out.variables['port']}" in solved[0]
    assert out.variables["code"] in solved[0]
    assert out.completed["variables"] == out.variables
