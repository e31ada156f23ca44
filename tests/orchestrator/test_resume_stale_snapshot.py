"""A restart's resume judges a lab by what it is when it gets to it, not by the start's
snapshot.

Before (seen in a chaos drill: kill -9 during launching under load): the start's
`reconcile` found a `launching` scenario's lab half-built; the consumers, which start with
the resume under way, got the spawn event the crash left unacknowledged and rebuilt the lab
and marked it `running`; the resume loop then reached it, read `running` plus the stale
"damaged", and failed the learner's new lab and tore it down. The same for a lab reported
lost and rebuilt meanwhile. After: the lab is looked at again under the scenario's lock,
and a whole one is left running.

The stale snapshot is made here by wrapping `reconcile` (the rebuild itself is the
ordinary redelivered-spawn path, `tests/orchestrator/test_launch_faults.py`).
"""

from __future__ import annotations

from typing import Any

import pytest

from forge.lifecycle import states
from forge.runtime.local.netns import remove_netns
from forge.services.orchestrator import app as orchestrator_app
from forge.services.orchestrator.reaper import reconcile

from .conftest import MakeOrch, running_lab


def test_a_lab_whole_again_by_the_time_the_resume_gets_to_it_keepsrunning_lab(
        make_orch: MakeOrch, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_orch(reaper_interval_s=3600)
    # The resume goes through the scenarios in id order: the really broken one last, so
    # once it has failed, the other two have been judged.
    rebuilt, found_again, broken = sorted(running_lab(first) for _ in range(3))
    first.stop()
    host = sorted(first.row(broken).details["hosts"])[0]
    remove_netns(first.runtime.names.host_ns(broken, host))  # really damaged

    def stale(state: Any) -> dict[str, list[str]]:
        report = reconcile(state)
        report["damaged"] = sorted({*report["damaged"], rebuilt})  # half-built at the start
        report["adopted"].remove(found_again)
        report["lost"] = sorted({*report["lost"], found_again})  # missing at the start
        return report

    monkeypatch.setattr(orchestrator_app, "reconcile", stale)
    second = make_orch(reaper_interval_s=3600)
    row = second.wait_state(broken, states.FAILED, timeout=30)
    assert "damaged" in (row.state_reason or "")
    labs = {i.lab_id: i.state for i in second.runtime.list()}
    assert second.row(rebuilt).state == states.RUNNING and labs.get(rebuilt) == "running"
    assert second.row(found_again).state == states.RUNNING
    assert labs.get(found_again) == "running"
    assert second.runtime.exec(rebuilt, host, ["/bin/true"]).exit_code == 0
