"""A spawn whose bus acknowledgement was lost cannot become a free, unaccounted lab.

Attack (seen during a NATS failover): the spawn event is stored but its acknowledgement
times out, so spawn_service answers 503 and gives the quota slot back. Before, it also
deleted the scenario row, and the orchestrator, finding no row, recreated one from the
valid event and launched a lab the learner was told had failed, holding no slot: a lab
outside the plan's concurrency limit, obtainable by retrying through a flaky bus. Now the
row stays as a failed tombstone, which the orchestrator skips; and if the orchestrator took
the scenario before the undo, the spawn went through and is answered as such, slot held.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats as nats_client
from sqlalchemy import select

from forge.bus import BusOutcomeUnknown
from forge.bus.subjects import DURABLE_ORCHESTRATOR_SPAWN, STREAM
from forge.lifecycle import states
from forge.quotas.limiter import active_slots
from forge.store.models import IdempotencyRecord, Scenario

from ..orchestrator.conftest import MakeOrch, make_orch  # noqa: F401  (fixture)
from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn  # noqa: F401  (fixture)
from ..spawn.test_spawn_api import count, receipt_for, spawn


def _lose_the_ack(env: SpawnEnv, before_raising: Any = None) -> None:
    """Publish for real, then report the bus as unavailable, as a lost ack does."""
    publisher = env.state.publisher
    real = publisher.publish

    async def publish(*args: Any, **kwargs: Any) -> Any:
        await real(*args, **kwargs)
        if before_raising is not None:
            await before_raising()
        raise BusOutcomeUnknown("publish: no acknowledgement (simulated lost ack)")

    publisher.publish = publish  # type: ignore[method-assign]


def _orchestrator_caught_up(env: SpawnEnv, timeout: float = 30) -> None:
    async def go() -> None:
        nc = await nats_client.connect(env.nats.admin_url)
        try:
            js = nc.jetstream()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                info = await js.consumer_info(STREAM, DURABLE_ORCHESTRATOR_SPAWN)
                if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered \
                        and (info.delivered.stream_seq or 0) > 0:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the orchestrator never consumed the spawn event")
        finally:
            await nc.close()

    asyncio.run(go())


def test_lost_ack_leaves_a_tombstone_the_orchestrator_does_not_launch(
        make_spawn: MakeSpawn, make_orch: MakeOrch) -> None:  # noqa: F811
    env = make_spawn()
    _lose_the_ack(env)
    with env.client() as client:
        resp = spawn(client, {"x-receipt-token": receipt_for(env, "PRO")},
                     request_id="lost-ack-0001")
    assert resp.status_code == 503 and resp.json()["error"] == "bus_unavailable"
    assert active_slots(env.state.ctx.db, "acme") == 0
    assert count(env, IdempotencyRecord) == 0
    with env.state.ctx.db.session() as sess:
        (row,) = sess.scalars(select(Scenario)).all()
        scenario_id, state = row.scenario_id, row.state
    assert state == states.FAILED

    orch = make_orch()  # same database; consumes the stored event now
    _orchestrator_caught_up(env)
    assert orch.row(scenario_id).state == states.FAILED
    assert orch.runtime.list() == []
    assert active_slots(env.state.ctx.db, "acme") == 0


def test_lost_ack_after_the_orchestrator_took_it_is_answered_as_a_spawn(
        make_spawn: MakeSpawn, make_orch: MakeOrch) -> None:  # noqa: F811
    env = make_spawn()
    orch = make_orch()

    async def wait_taken() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with env.state.ctx.db.session() as sess:
                rows = sess.scalars(select(Scenario)).all()
            if rows and rows[0].state != states.PENDING:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the orchestrator never took the scenario")

    _lose_the_ack(env, before_raising=wait_taken)
    with env.client() as client:
        resp = spawn(client, {"x-receipt-token": receipt_for(env, "PRO")},
                     request_id="lost-ack-0002")
    assert resp.status_code == 201, resp.text
    scenario_id = resp.json()["scenario_id"]
    assert orch.row(scenario_id).state != states.FAILED
    assert active_slots(env.state.ctx.db, "acme") == 1
