"""spawn_service's lifecycle consumer decodes `forge.scenario.ended` through its contract:
a notice in an unknown version is kept as a failed event with the reason and frees nothing."""

from __future__ import annotations

import asyncio
import time

from forge.bus import Publisher
from forge.bus.contracts import ScenarioEndedV1, payload
from forge.bus.subjects import SCENARIO_ENDED
from forge.entitlements.grants import grant
from forge.quotas.limiter import active_slots
from forge.store.failed_events import list_failed_events

from .conftest import SpawnEnv
from .test_spawn_api import key_for, spawn


def test_unknown_version_ended_notice_is_refused_and_keeps_the_slot(
        spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "FREE")  # 1 concurrent
    with spawn_env.client() as client:
        first = spawn(client, key_for(spawn_env))
        assert first.status_code == 201
    sid = first.json()["scenario_id"]
    body = {**payload(ScenarioEndedV1(scenario_id=sid, state="completed")), "v": 2}

    async def publish() -> None:
        async with Publisher(spawn_env.nats.admin_url) as pub:
            await pub.connection.wait_ready(5)
            await pub.publish(SCENARIO_ENDED, body, msg_id=f"ended-v2-{sid}")

    asyncio.run(publish())
    db = spawn_env.state.ctx.db
    deadline = time.monotonic() + 10
    while not list_failed_events(db) and time.monotonic() < deadline:
        time.sleep(0.05)
    failed = list_failed_events(db)
    assert failed and "unknown_version" in failed[0].error
    assert failed[0].scenario_id == sid
    assert active_slots(db, "acme") == 1  # not released on a notice it cannot read
