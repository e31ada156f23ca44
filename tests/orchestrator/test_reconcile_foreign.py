"""A restart meets a damaged lab and another installation's lab (red team AS).

Before: a lab with a host gone (an operator's `forge runtime cleanup` run with the wrong
STORAGE_ROOT removed part of it) was adopted at the orchestrator's start and stayed
`running` with nothing behind it; and a lab of the same runtime prefix made by another
installation on the machine was either adopted or destroyed as an orphan. After: the
damaged lab is failed and what is left of it torn down (its slot freed); the foreign lab
is neither adopted nor touched; the whole lab runs on.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from forge.lifecycle import states
from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime
from forge.runtime.local.netns import remove_netns

from .conftest import MakeOrch, running_lab


def test_a_restart_fails_a_damaged_lab_and_leaves_a_foreign_one_alone(
        make_orch: MakeOrch, tmp_path: Path) -> None:
    first = make_orch(reaper_interval_s=3600)
    damaged, whole = running_lab(first), running_lab(first)
    other = LocalRuntime(str(tmp_path / "another-installation"), first.runtime.names.prefix)
    foreign = "scn-" + secrets.token_hex(8)
    other.create(LabSpec(foreign, [SubnetSpec("lan", "10.213.0.0/24")],
                         [HostSpec("box", networks=[("lan", None)])]))
    try:
        first.stop()  # down; meanwhile one host of `damaged` goes
        host = sorted(first.row(damaged).details["hosts"])[0]
        remove_netns(first.runtime.names.host_ns(damaged, host))

        second = make_orch(reaper_interval_s=3600)
        row = second.wait_state(damaged, states.FAILED, timeout=30)
        assert "damaged" in (row.state_reason or "")
        assert second.row(whole).state == states.RUNNING
        listed = {i.lab_id: i.state for i in second.runtime.list()}
        assert damaged not in listed  # what was left of it is gone
        assert (listed[whole], listed[foreign]) == ("running", "foreign")
        assert [i.state for i in other.list() if i.lab_id == foreign] == ["running"]
        assert other.exec(foreign, "box", ["/bin/true"]).exit_code == 0
    finally:
        other.destroy(foreign)
        other.close()
