"""A lab whose image is not built fails its spawn cleanly, saying which image and how to
build it; nothing of the lab is left and the learner's slot is free again.

The whole path on real parts: spawn_service and the orchestrator (real uvicorn, one
nats-server, SQLite), the configured runtime engine (`make_runtime`: local, with the image
cache lookup), a learner on the FREE plan (one lab at a time).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from forge.bus import NatsServer
from forge.config import load_settings
from forge.content import content_path
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.runtime import Runtime
from forge.services.orchestrator.app import build_app as build_orchestrator
from forge.services.spawn.app import build_app as build_spawn
from tests.live_server import live_server
from tests.runtime.helpers import leftovers
from tests.services.conftest import prod_environ, with_signing_key

from ..support.configured_runtime import runtime_of
from ..support.prefixes import runtime_prefix

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]
REASON = ("lab could not be created: hosts[0].image: image fresh is not built: "
          "run forge image build fresh")


@dataclass
class Platform:
    url: str
    key: str
    runtime: Runtime
    prefix: str
    state_dir: str


@pytest.fixture()
def platform(tmp_path: Path) -> Iterator[Platform]:
    """spawn_service + orchestrator whose only template puts its learner host on the
    image ``fresh``, defined in FORGE_IMAGE_DIR but never built."""
    templates, defs = tmp_path / "templates", tmp_path / "defs"
    templates.mkdir()
    defs.mkdir()
    text = (content_path("templates") / "netplus.yaml").read_text()
    (templates / "netplus.yaml").write_text(
        text.replace("      - name: learner\n", "      - name: learner\n        image: fresh\n", 1))
    (defs / "base.yaml").write_text((content_path("images") / "base.yaml").read_text())
    (defs / "fresh.yaml").write_text("name: fresh\npackages: [bash, forge-never-built]\n")
    nats = NatsServer()
    nats.start()
    prefix = runtime_prefix("q")
    base = {**nats.client_env(), "FORGE_DB_URL": f"sqlite:///{tmp_path / 'forge.db'}",
            "FORGE_TEMPLATE_DIR": str(templates), "FORGE_IMAGE_DIR": str(defs),
            "FORGE_IMAGE_CACHE": str(load_settings().image_cache),
            "FORGE_RUNTIME_PREFIX": prefix, "FORGE_RUNTIME_ENGINE": "local"}
    storage = with_signing_key(tmp_path / "storage")
    settings = load_settings(prod_environ(storage, **base))
    try:
        with runtime_of(settings) as runtime:
            orchestrator = build_orchestrator(settings, runtime=runtime, reaper_interval_s=3600,
                                              consumer_options={"max_deliver": 4})
            with live_server(orchestrator) as orch_url:
                spawn = build_spawn(load_settings(prod_environ(
                    storage, ORCHESTRATOR_URL=orch_url, **base)))
                with live_server(spawn) as url:
                    db = spawn.state.spawn.ctx.db
                    grant(db, "acme", "FREE", "fay")
                    key = create_api_key(db, "acme", "fay").plaintext
                    yield Platform(url, key, runtime, prefix, str(storage / "runtime"))
    finally:
        nats.close()


def spawn_and_wait(client: httpx.Client) -> dict[str, Any]:
    """Spawn netplus and wait until the lab leaves pending/launching; its view."""
    made = client.post("/v1/spawn", json={"track": "netplus"})
    assert made.status_code == 201, made.text
    sid = made.json()["scenario_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = client.get(f"/v1/scenarios/{sid}").json()
        if view["state"] not in ("pending", "launching"):
            return dict(view)
        time.sleep(0.1)
    raise AssertionError(f"{sid} never left launching")


def test_a_lab_on_an_unbuilt_image_fails_with_the_build_command_and_leaves_nothing(
    platform: Platform,
) -> None:
    with httpx.Client(base_url=platform.url, timeout=30,
                      headers={"x-api-key": platform.key}) as client:
        first = spawn_and_wait(client)
        assert first["state"] == "failed"
        assert first["reason"] == REASON
        assert platform.runtime.list() == []
        assert leftovers(platform.prefix, platform.state_dir) == []
        # The FREE plan allows one live lab: the failed one no longer holds the slot.
        second = spawn_and_wait(client)
        assert second["scenario_id"] != first["scenario_id"]
        assert (second["state"], second["reason"]) == ("failed", REASON)
        assert platform.runtime.list() == []
        assert leftovers(platform.prefix, platform.state_dir) == []
