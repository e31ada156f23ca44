"""A launch that fails between the move to `launching` and the build (issue 19: the lab is
now built while the move's audit entry is written and announced).

The disk filling up under the audit log, NATS going away at the moment of the announce, or a
renderer failing on a template, is injected where it would surface (the audit write, the
announce, the renderer): none can be made to happen at that moment on demand with the real
parts here (the NATS drill stops the real server, but cannot choose the moment).
"""

from __future__ import annotations

from typing import Any

import pytest

from forge.bus.errors import BusUnavailable
from forge.lifecycle import states
from forge.lifecycle.store import Transition
from forge.services.orchestrator import launcher
from forge.templates.problems import Problem, TemplateError

from .conftest import Orch, spawn_event

SPAWN = "forge.spawn.requested"


@pytest.mark.parametrize("fault", ["audit", "announce"])
def test_a_launch_that_fails_after_launching_is_resumed_by_its_redelivery(
        orch: Orch, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """The move to `launching` is stored, then its audit write (disk full) or its announce
    (NATS went down at that moment) fails: the lab built meanwhile is destroyed, not left
    running unaccounted, and the spawn event, redelivered, resumes the launch at once;
    before, the scenario sat in `launching` until the reaper's STUCK_LAUNCHING (2 min)
    and the learner waited that long after the outage was over."""
    real_audit, real_create, real_destroy = (launcher.audit_move, orch.runtime.create,
                                             orch.runtime.destroy)
    real_announce = orch.state.announce
    failed: list[str] = []
    built: list[str] = []
    destroyed: list[str] = []

    def audit(root: Any, transition: Transition) -> None:
        if transition.to_state == states.LAUNCHING:
            failed.append(transition.scenario_id)
            raise OSError(28, "No space left on device")
        real_audit(root, transition)

    async def announce(transition: Transition, **kw: Any) -> None:
        if transition.to_state == states.LAUNCHING and not failed:
            failed.append(transition.scenario_id)
            raise BusUnavailable("NATS not connected")
        await real_announce(transition, **kw)

    def create(spec: Any) -> Any:
        info = real_create(spec)
        built.append(spec.lab_id)
        return info

    def destroy(lab_id: str) -> None:
        real_destroy(lab_id)
        destroyed.append(lab_id)

    if fault == "audit":
        monkeypatch.setattr(launcher, "audit_move", audit)
    else:
        monkeypatch.setattr(orch.state, "announce", announce)
    monkeypatch.setattr(orch.runtime, "create", create)
    monkeypatch.setattr(orch.runtime, "destroy", destroy)
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish(SPAWN, event)
    row = orch.wait_state(sid, states.RUNNING, states.FAILED)
    assert row.state == states.RUNNING, row.state_reason
    assert failed == [sid]
    assert built == [sid, sid] and destroyed == [sid]  # the first build went, one lab runs
    assert [i.lab_id for i in orch.runtime.list()] == [sid]
    assert row.details["launch_attempts"] == 2


def test_a_template_that_does_not_render_fails_the_scenario(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering now comes before the move: its failure fails the scenario with the reason
    at once, as the build's failure did, instead of leaving it `pending` to expire."""

    def render(*_: Any) -> Any:
        raise TemplateError([Problem("spec.assets", "no such asset")], source="lab-netplus")

    monkeypatch.setattr(launcher, "render", render)
    event = spawn_event(orch.settings)
    orch.publish(SPAWN, event)
    row = orch.wait_state(str(event["scenario_id"]), states.FAILED, states.RUNNING)
    assert row.state == states.FAILED
    assert "lab could not be created" in row.state_reason
    assert not orch.runtime.list()
