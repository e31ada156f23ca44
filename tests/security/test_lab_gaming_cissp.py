"""Gaming the cissp lab's intrusion finding with host routes (red team, this stop).

`intrusion-identified` passes when an unauthorized-access risk names the address that got
in, and fails when such a risk also blames an address that never did: blaming every
address of the log, or every address of 203.0.113.0/24, is not telling the intruder from
those that only knocked (the `every-documentation-address` gaming attempt). It found the
blamed addresses with a pattern that skips an address followed by `/` (a network such as
203.0.113.0/24 names no host), but took the intruder's address as named when followed by
`/`. So every address of 203.0.113.0/24 written as a host route, `203.0.113.N/32`, named
the intruder and blamed nobody: the criterion passed without reading the log. The
register is graded as the orchestrator grades, in a lab of the shipped template on a real
LocalRuntime.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forge.authoring.harness import Harness

from ..support.shipped_labs import shipped_harness

pytestmark = pytest.mark.root

# Every address of the documentation network the log's intruders come from, each a /32,
# in one intrusion risk that names the account of the task's own words.
EVERY_HOST_ROUTE = r"""
set -euo pipefail
ips=$(for n in $(seq 1 254); do printf '203.0.113.%s/32 ' "$n"; done)
jq -n --arg ips "$ips" '{risks: [
  {id: "R1", title: "intrusion", category: "unauthorized-access",
   evidence: ("login for backup from one of " + $ips), likelihood: 5, impact: 5,
   risk_score: 25, treatment: "mitigate", owner: "infra", action: "block"}]}' \
  > /workspace/risk_register.json
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Labs of the shipped cissp template on a runtime of this module's own."""
    with shipped_harness(tmp_path_factory.mktemp("cissp"), "cissp", "c") as h:
        yield h


def test_every_address_as_a_host_route_is_no_intrusion_found(harness: Harness) -> None:
    run = harness.launch()
    run.must(EVERY_HOST_ROUTE, "an intrusion risk naming every 203.0.113.N/32")
    attacker = f"203.0.113.{run.values['attacker']}/32"
    assert attacker in run.sh("cat /workspace/risk_register.json").stdout_text
    graded = run.grade()
    assert not graded.passed["intrusion-identified"], graded
