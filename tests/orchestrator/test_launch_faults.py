"""A launch that fails between the move to `launching` and the build (issue 19: the lab is
now built while the move's audit entry is written and announced).

The disk filling up under the audit log, or a renderer failing on a template, is injected
where it would surface (the audit write, the renderer): neither can be made to happen on
demand with the real parts here.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from forge.lifecycle import states
from forge.lifecycle.store import Transition
from forge.services.orchestrator import launcher
from forge.templates.problems import Problem, TemplateError

from .conftest import Orch, spawn_event

SPAWN = "forge.spawn.requested"


def test_a_launch_whose_audit_write_fails_leaves_no_lab(orch: Orch,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """As when the move itself failed: the scenario stays `launching` for the reaper's
    resume, and the lab built meanwhile is destroyed, not left running unaccounted."""
    real_audit, real_create = launcher.audit_move, orch.runtime.create
    failed: list[str] = []
    built: list[str] = []

    def audit(root: Any, transition: Transition) -> None:
        if transition.to_state == states.LAUNCHING:
            failed.append(transition.scenario_id)
            raise OSError(28, "No space left on device")
        real_audit(root, transition)

    def create(spec: Any) -> Any:
        info = real_create(spec)
        built.append(spec.lab_id)
        return info

    monkeypatch.setattr(launcher, "audit_move", audit)
    monkeypatch.setattr(orch.runtime, "create", create)
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish(SPAWN, event)
    deadline = time.monotonic() + 60  # a hang guard, not a timing
    while not (sid in failed and sid in built
               and sid not in {i.lab_id for i in orch.runtime.list()}):
        assert time.monotonic() < deadline, (failed, built, orch.runtime.list())
        time.sleep(0.05)
    assert orch.row(sid).state == states.LAUNCHING


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
