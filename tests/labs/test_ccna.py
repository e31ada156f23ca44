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
    assert f"LAN B: 10.{out.variables['lan_b2']}.{out.variables['lan_b3']}.0/24" in solved[0]
    assert f"pc-b {out.variables['b_id']}" in solved[0]


def test_both_routers_route_and_the_pcs_took_this_labs_office_address(
        platform: Platform) -> None:
    # The PCs keep NET_ADMIN for their start command only (no terminal there): it gave
    # each its office address, per scenario, and the default route sending from it.
    lab = platform.spawn("ccna")
    assert lab.sh("ip route add 10.99.0.0/24 via 10.62.1.10").exit_code == 0
    assert lab.sh("ip route add 10.99.0.0/24 via 10.62.2.10", host="r2").exit_code == 0
    route = lab.sh("ip -4 route show default", host="pc-a").stdout_text
    office = f"10.{lab.variables['lan_a2']}.{lab.variables['lan_a3']}"
    assert route.startswith(f"default via {office}.1 ") and f" src {office}.10" in route, route
    platform.finish(lab)
