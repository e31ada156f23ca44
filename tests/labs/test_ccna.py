"""ccna end to end: the learner has a terminal on both routers, R1 ("learner") and R2 ("r2"),
and adds the static route to the far LAN on each.

Criteria (weights): r1-static-route 1, r2-static-route 1, lan-a-reaches-lan-b 2,
lan-b-reaches-lan-a 2 (total 6).

Untouched, partial and gaming runs (one router alone, default routes, a wrong next hop,
impersonating pc-b) are proven by `forge lab test` (tests/authoring/test_shipped_labs.py,
plan in templates/ccna.lab-test.yaml); this file keeps what goes through the whole
platform (bus, scoreboard, signed verdict) and the capabilities of each host.
"""

from __future__ import annotations

import pytest

from .conftest import Platform

pytestmark = pytest.mark.root


def test_reference_solution_scores_one(platform: Platform) -> None:
    solved: list[str] = []
    out = platform.play("ccna", lambda lab: solved.append(lab.solve("ccna").stdout_text))
    assert out.score["score"] == 1.0, out.score
    assert all(out.passed().values())
    # Found R2 on the transit link from R1, and pc-b answered with this lab's identity.
    assert "R2 on the transit link: 10.62.0.6" in solved[0]
    assert f"pc-b {out.variables['b_id']}" in solved[0]


def test_learner_capabilities_are_only_on_the_routers(platform: Platform) -> None:
    lab = platform.spawn("ccna")
    assert lab.sh("ip route add 10.99.0.0/24 via 10.62.1.10").exit_code == 0
    assert lab.sh("ip route add 10.99.0.0/24 via 10.62.2.10", host="r2").exit_code == 0
    denied = lab.sh("ip route add 10.99.0.0/24 via 10.62.1.1", host="pc-a")
    assert denied.exit_code != 0 and "Operation not permitted" in denied.stderr_text
    platform.finish(lab)
