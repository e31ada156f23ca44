"""Policy test fixtures: the repository bundle, engines and an OPA-compatible server."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from forge.content import content_path
from forge.policy import EmbeddedEngine, PolicyBundle, build_training_input
from forge.policy.opa_server import OpaServer
from forge.templates import ScenarioTemplate, validate_document

REPO = Path(__file__).resolve().parents[2]
POLICIES = content_path("policies")
FIXTURE = REPO / "tests" / "templates" / "fixtures" / "good.yaml"


@pytest.fixture(scope="session")
def bundle() -> PolicyBundle:
    return PolicyBundle.load(POLICIES)


@pytest.fixture(scope="session")
def engine(bundle: PolicyBundle) -> EmbeddedEngine:
    return EmbeddedEngine(bundle)


@pytest.fixture
def opa_server(engine: EmbeddedEngine) -> Iterator[OpaServer]:
    """The OPA-compatible server on a free loopback port, stopped after the test."""
    server = OpaServer(engine, "127.0.0.1", 0)
    thread = server.start_background()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def template_doc() -> dict[str, Any]:
    """The netplus/foundation fixture template as a mutable document."""
    data: dict[str, Any] = yaml.safe_load(FIXTURE.read_text())
    return copy.deepcopy(data)


@pytest.fixture
def training_input() -> Callable[..., dict[str, Any]]:
    """Build the gate input for a template document, as the orchestrator will."""

    def build(doc: dict[str, Any], *, plan: str = "FREE", tracks: tuple[str, ...] = ("netplus",),
              track: str = "netplus") -> dict[str, Any]:
        model, problems = validate_document(doc)
        assert not problems and isinstance(model, ScenarioTemplate), problems
        return build_training_input(model, plan_name=plan, plan_tracks=tracks,
                                    requested_track=track, template_sha256="0" * 64)

    return build
