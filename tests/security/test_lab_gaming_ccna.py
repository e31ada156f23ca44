"""Gaming the ccna lab without routing anything of one's own lab.

docs/labs.md promises that an answer copied from another learner's lab is wrong in yours.
ccna's LANs were 10.62.1.0/24 and 10.62.2.0/24 in every lab, so the two `ip route add`
lines of any solved lab scored 6/6 in every other one, typed without reading the lab. The
office LANs' prefixes are now per scenario (10.X.Y.0/24), so another lab's routes name
prefixes this lab does not have. A route for every prefix LAN B is drawn from holds this
lab's too; the route check refuses a routing table that large. R1 masquerading LAN A's
requests as its transit address got pc-a pc-b's page with no way back to LAN A on R2
(3/6 for one router's work): pc-b's service names the address it sees, and the check asks
for pc-a's office address (the lab test's gaming attempt `masquerading-router`).

Real LocalRuntime, the shipped template, graded as the orchestrator grades.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forge.authoring.harness import Harness
from forge.authoring.labtest import lab_test_path, load_lab_test, script_sections
from forge.authoring.prove import dependent_criteria, distinct_values
from forge.content import content_path

from ..support.shipped_labs import shipped_harness

pytestmark = pytest.mark.root

SOLUTION = (content_path("solutions") / "ccna.sh").read_text()
MASQUERADE = next(g.script for g in load_lab_test(
    lab_test_path(content_path("templates"), "ccna")).gaming if g.name == "masquerading-router")
ROUTERS = ("learner", "r2")
# Every prefix LAN B is drawn from (10.150.0.0/24 to 10.199.255.0/24), via R2.
EVERY_PREFIX = r"""
for x in $(seq 150 199); do for y in $(seq 0 255); do
  echo "route add 10.$x.$y.0/24 via 10.62.0.6"; done; done | ip -batch -
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Labs of the shipped ccna template on a runtime of this module's own."""
    ready = (("learner", "9062"), ("r2", "9062"), ("pc-a", "8080"), ("pc-b", "8080"))
    with shipped_harness(tmp_path_factory.mktemp("ccna"), "ccna", "c", ready) as h:
        yield h


def test_routes_copied_from_another_lab_are_wrong_here(harness: Harness) -> None:
    solved = harness.launch()
    for host, section in script_sections(SOLUTION, "learner"):
        solved.in_terminal(section, timeout=120, host=host)
    routes = {host: [line for line in solved.must("ip -4 -o route show | grep ' via '",
                                                   "reading the routes", host)
                     .stdout_text.splitlines() if line.strip()]
              for host in ROUTERS}
    assert all(routes.values()), routes
    assert solved.grade().score == 1.0

    values = distinct_values(harness.template, solved.values,
                             dependent_criteria(harness.template))
    assert values is not None
    other = harness.launch(values)
    for host, lines in routes.items():
        other.sh("".join(f"ip route add {line}\n" for line in lines), host)
    graded = other.grade()
    assert not any(graded.passed.values()), graded
    assert graded.score == 0


def test_every_possible_prefix_and_a_masquerading_router_are_no_answer(harness: Harness) -> None:
    run = harness.launch()
    lan_b = f"10.{run.values['lan_b2']}.{run.values['lan_b3']}.0/24"
    run.must(EVERY_PREFIX, "a route for every prefix")
    # In place: this lab's route for LAN B is among them, via R2 on the transit link.
    shown = run.must(f"ip -4 route show exact {lan_b}", "reading the route").stdout_text
    assert shown.startswith(f"{lan_b} via 10.62.0.6 dev "), shown
    # R1 masquerades too, R2 untouched (no way back to LAN A): pc-a gets pc-b's page.
    assert MASQUERADE is not None
    run.sh(MASQUERADE)
    page = run.must(f"curl -sS --max-time 2 http://{lan_b[:-4]}10:8080/", "pc-a's request",
                    "pc-a").stdout_text
    assert page == f"pc-b {run.values['b_id']}\n", page
    lan_a = f"10.{run.values['lan_a2']}.{run.values['lan_a3']}."
    assert lan_a not in run.must("ip -4 route show", "R2's routes", "r2").stdout_text
    graded = run.grade()
    assert not graded.passed["r1-static-route"], graded
    assert not graded.passed["lan-a-reaches-lan-b"], graded
