"""A learner reads why their lab failed, not the lab node's internals.

A scenario's reason is shown to its learner (``GET /v1/scenarios/ID``, the lab page). It
used to carry the runtime error's own text: a sandbox's stderr, a path under the node's
state directory, an engine message. The learner now reads what failed; the error's text
goes to the log and the operator's view of the scenario (``failure_reason``). An error
written for the learner or the template's author (a spec field such as an unbuilt image)
is still shown: ``tests/images/test_spawn_unbuilt_image.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from forge.images.definitions import ImageDefinitionError
from forge.images.lookup import ImageNotBuilt
from forge.runtime.base import LabSpec, RuntimeFault, SpecError
from forge.runtime.local.rootfs import host_roots
from forge.runtime.local.seeds import write_root_seeds
from forge.runtime.plan import plan_lab
from forge.services.orchestrator.failure_reason import failure
from tests.images.test_spawn_unbuilt_image import Platform, platform, spawn_and_wait
from tests.runtime.helpers import simple_lab

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]
__all__ = ["platform"]  # the fixture, imported for this module's tests

# What a failing sandbox start says (sandbox.py: the tail of bwrap's stderr).
INTERNAL = ("host learner: sandbox did not start: bwrap: Can't mount tmpfs on "
            "/var/lib/forge/runtime/labs/q1b2c/learner/root: No space left on device")


def test_a_lab_that_fails_on_the_node_tells_its_learner_what_failed_not_the_node(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    def create(spec: LabSpec) -> None:  # fault injection: the node's own failure
        raise RuntimeFault(INTERNAL)

    monkeypatch.setattr(platform.runtime, "create", create)
    caplog.set_level(logging.WARNING, logger="forge.orchestrator.failure")
    with httpx.Client(base_url=platform.url, timeout=30,
                      headers={"x-api-key": platform.key}) as client:
        view = spawn_and_wait(client)
        assert view["state"] == "failed"
        assert view["reason"] == ("lab could not be created: the error is recorded for the "
                                  "operator")
        listed = client.get("/v1/scenarios").text
        page = client.get(f"/lab/{view['scenario_id']}/status")
    assert page.status_code == 200, page.text
    for shown in (str(view), listed, page.text):
        assert "/var/lib/forge" not in shown and "bwrap" not in shown, shown
    logged = [r.getMessage() for r in caplog.records if view["scenario_id"] in r.getMessage()]
    assert any(INTERNAL in line for line in logged), logged  # the operator still has it


def test_an_image_the_node_cannot_read_is_the_nodes_error_an_unbuilt_one_the_authors() -> None:
    """The image resolver's errors: an unbuilt image names the command that builds it (the
    learner's reason shows it); a definitions file the node cannot read names its path on
    the node (kept for the operator). Both used to be SpecErrors, both shown."""
    spec = simple_lab("img", image="broken")
    plan = plan_lab(spec)

    def unreadable(name: str) -> str:
        raise ImageDefinitionError("/etc/forge/images/broken.yaml",
                                   ["cannot be read: Permission denied"])

    def unbuilt(name: str) -> str:
        raise ImageNotBuilt(name, defined=True)

    with pytest.raises(RuntimeFault) as node:
        host_roots(plan, "/", {}, unreadable)
    assert not isinstance(node.value, SpecError)
    reason, details = failure("img", "lab could not be created", node.value)
    assert "/etc/forge" not in reason and "/etc/forge" in details["error"]
    # Read once in brackets after the state ("failed (…)"): none of its own inside.
    assert reason == "lab could not be created: the error is recorded for the operator"
    with pytest.raises(SpecError) as author:
        host_roots(plan, "/", {}, unbuilt)
    reason, _ = failure("img", "lab could not be created", author.value)
    assert reason.endswith("image broken is not built: run forge image build broken"), reason


def test_a_seed_the_image_refuses_is_the_authors_a_node_failure_the_operators(
    tmp_path: Path,
) -> None:
    """Seeding a template's file into a host's image: a path that is a directory there is
    the template's mistake (shown, naming the file); a failure of the node itself (here
    its overlay is gone: the message names its path under the state directory) is not."""
    root = tmp_path / "overlay"
    (root / "etc" / "ssh").mkdir(parents=True)
    host = plan_lab(simple_lab("seed", image="base", files={"/etc/ssh": "x"})).hosts[0]
    with pytest.raises(SpecError) as author:
        write_root_seeds(str(root), host, 1000)
    reason, _ = failure("seed", "lab could not be created", author.value)
    assert "hosts[0].files['/etc/ssh']: cannot be written in the image" in reason
    assert "Is a directory" in reason and str(tmp_path) not in reason
    host = plan_lab(simple_lab("seed", image="base", files={"/etc/motd": "x"})).hosts[0]
    with pytest.raises(RuntimeFault) as node:
        write_root_seeds(str(tmp_path / "gone"), host, 1000)
    assert not isinstance(node.value, SpecError)
    reason, details = failure("seed", "lab could not be created", node.value)
    assert str(tmp_path) not in reason and str(tmp_path) in details["error"]
