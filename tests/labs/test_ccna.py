"""ccna end to end: the learner has a terminal on both routers, R1 ("learner") and R2 ("r2"),
and adds the static route to the far LAN on each.

Criteria (weights): r1-static-route 1, r2-static-route 1, lan-a-reaches-lan-b 2,
lan-b-reaches-lan-a 2 (total 6).
"""

from __future__ import annotations

import pytest

from .conftest import Lab, Platform

pytestmark = pytest.mark.root

NONE = {"r1-static-route": False, "r2-static-route": False, "lan-a-reaches-lan-b": False,
        "lan-b-reaches-lan-a": False}


def test_untouched_lab_scores_zero(platform: Platform) -> None:
    out = platform.play("ccna")
    assert out.score["score"] == 0.0
    assert out.passed() == NONE


def test_reference_solution_scores_one(platform: Platform) -> None:
    solved: list[str] = []
    out = platform.play("ccna", lambda lab: solved.append(lab.solve("ccna").stdout_text))
    assert out.score["score"] == 1.0, out.score
    assert all(out.passed().values())
    # Found R2 on the transit link from R1, and pc-b answered with this lab's identity.
    assert "R2 on the transit link: 10.62.0.6" in solved[0]
    assert f"pc-b {out.variables['b_id']}" in solved[0]


def test_one_router_alone_is_not_enough(platform: Platform) -> None:
    def act(lab: Lab) -> None:
        # R1's route is right, but R2 does not know the way back to LAN A (the task that
        # needs R2's own terminal): neither PC gets an answer.
        result = lab.sh("ip route add 10.62.2.0/24 via 10.62.0.6")
        assert result.exit_code == 0, result.stderr_text

    out = platform.play("ccna", act)
    assert out.passed() == {**NONE, "r1-static-route": True}


def test_default_routes_move_packets_but_miss_the_static_routes(platform: Platform) -> None:
    def act(lab: Lab) -> None:
        for host, via in (("learner", "10.62.0.6"), ("r2", "10.62.0.1")):
            result = lab.sh(f"ip route add default via {via}", host=host)
            assert result.exit_code == 0, result.stderr_text

    out = platform.play("ccna", act)
    assert out.passed() == {"r1-static-route": False, "r2-static-route": False,
                            "lan-a-reaches-lan-b": True, "lan-b-reaches-lan-a": True}
    assert out.score["score"] == pytest.approx(4 / 6, abs=1e-3)


def test_wrong_next_hop_and_impersonation_fail(platform: Platform) -> None:
    def act(lab: Lab) -> None:
        # A route for the right prefix through the wrong device, and R1 claiming pc-b's
        # address itself: neither makes pc-b answer.
        result = lab.sh("ip route add 10.62.2.0/24 via 10.62.1.10\n"
                        "ip addr add 10.62.2.10/32 dev lo\n"
                        "ip -4 route show 10.62.2.0/24")
        assert result.exit_code == 0, result.stderr_text
        assert "10.62.2.0/24 via 10.62.1.10" in result.stdout_text

    out = platform.play("ccna", act)
    assert out.passed() == NONE
    assert out.score["score"] == 0.0


def test_learner_capabilities_are_only_on_the_routers(platform: Platform) -> None:
    lab = platform.spawn("ccna")
    assert lab.sh("ip route add 10.99.0.0/24 via 10.62.1.10").exit_code == 0
    assert lab.sh("ip route add 10.99.0.0/24 via 10.62.2.10", host="r2").exit_code == 0
    denied = lab.sh("ip route add 10.99.0.0/24 via 10.62.1.1", host="pc-a")
    assert denied.exit_code != 0 and "Operation not permitted" in denied.stderr_text
    platform.finish(lab)
