"""A lab whose service never listens on a port its template declares ready fails its
launch with a reason naming the host and the port, and no lab is left behind (as after
any failed build: its scenario's end frees the quota slot)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forge.lifecycle import states

from ..conftest import TEMPLATE_FIXTURES
from ..runtime.helpers import leftovers
from .conftest import MakeOrch, spawn_event

pytestmark = pytest.mark.root


def test_a_service_that_never_listens_fails_the_launch_naming_host_and_port(
        make_orch: MakeOrch, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATE_FIXTURES, templates)
    netplus = templates / "lab-netplus.yaml"
    text = netplus.read_text()
    served = '        command: ["/usr/bin/python3", "-m", "http.server", "{{ vars.port }}"'
    assert served in text
    # The target declares its port ready but its service fails at once, saying why.
    netplus.write_text(text.replace(served, '        ready_ports: ["{{ vars.port }}"]\n'
                                            '        command: ["/bin/sh", "-c", "echo '
                                            'bad-config-{{ vars.port }} >&2; exit 4"'
                                            '] #', 1))
    orch = make_orch(FORGE_TEMPLATE_DIR=str(templates))
    orch.runtime.ready_timeout_s = 1
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish("forge.spawn.requested", event)
    row = orch.wait_state(sid, states.RUNNING, states.FAILED)
    assert row.state == states.FAILED
    reason = row.state_reason or ""
    assert reason.startswith("lab could not be created: host target: nothing listened on "
                             "TCP port "), reason
    assert "ready_ports" in reason
    # The service's output (it may carry the scenario's values) is the operator's, not the
    # learner's: kept in the scenario's details with how the service ended.
    assert "bad-config" not in reason
    error = str(row.details.get("error"))
    assert "its service exited with status 4; its output ends:\nbad-config-" in error, error
    assert orch.runtime.list() == []
    assert leftovers(orch.runtime.names.prefix, orch.runtime.names.state_dir) == []
