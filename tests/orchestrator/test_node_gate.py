"""The spawn consumer's pull gate (`LabNode.try_enter`) is cheap: up to 8 workers ask it
every 0.1 s while the gate is shut. Before: every call walked every loaded template to find
the smallest lab. After: the smallest lab is computed once, when the node is made (the
template registry does not change while the process runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config import load_settings
from forge.services.orchestrator.node import LabNode, lab_memory_mb
from forge.templates.registry import LoadedTemplate, TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..services.conftest import prod_environ


class CountingRegistry(TemplateRegistry):
    """The real registry, counting template look-ups."""

    lookups = 0

    def get(self, name: str) -> LoadedTemplate:
        self.lookups += 1
        return super().get(name)


@pytest.mark.usefixtures("sqlite_only_store")
def test_the_pull_gate_looks_up_no_template(tmp_path: Path) -> None:
    registry = CountingRegistry.load(TEMPLATE_FIXTURES)
    assert isinstance(registry, CountingRegistry) and len(registry.names()) > 1
    smallest = min(m for m in (lab_memory_mb(registry, t) for t in registry.names()) if m > 0)
    settings = load_settings(prod_environ(
        tmp_path, FORGE_NODE_CAPACITY_LABS="50",
        FORGE_NODE_CAPACITY_MEMORY_MB=str(3 * smallest)))
    node = LabNode(settings=settings, registry=registry)
    node.revision = 1  # registered
    registry.lookups = 0
    # Room for three of the smallest labs: the gate opens three times, then stays shut.
    answers = [node.try_enter() for _ in range(200)]
    assert answers[:3] == [True] * 3 and not any(answers[3:])
    assert registry.lookups == 0
