"""Subject names and the idempotent stream setup."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from nats.js import api

from forge.bus import BusError, NatsServer, ensure_streams
from forge.bus.dial import connect
from forge.bus.subjects import (
    FORGE_STREAM,
    SCENARIO_STATES,
    SCENARIO_SUBMIT,
    SPAWN_REQUESTED,
    StreamSpec,
    check_subject,
    scenario_subject,
)


def test_scenario_subjects() -> None:
    assert scenario_subject("completed") == "forge.scenario.completed"
    assert len(SCENARIO_STATES) == 8
    with pytest.raises(ValueError, match="state: unknown scenario state 'bogus'"):
        scenario_subject("bogus")


@pytest.mark.parametrize("bad", ["", "forge..x", "forge.x y", "forge.*", "forge.>"])
def test_publish_subjects_are_validated(bad: str) -> None:
    with pytest.raises(ValueError, match="subject"):
        check_subject(bad)


def test_stream_spec_validation() -> None:
    with pytest.raises(ValueError, match="name"):
        StreamSpec(name="bad name", subjects=("a",))
    with pytest.raises(ValueError, match="subjects"):
        StreamSpec(name="X", subjects=())
    with pytest.raises(ValueError, match="duplicate_window_seconds"):
        StreamSpec(name="X", subjects=("a",), max_age_seconds=10, duplicate_window_seconds=60)


async def test_ensure_creates_then_is_idempotent_then_updates(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.admin_url, "t")
    js = nc.jetstream()
    try:
        assert await ensure_streams(js) == []  # the embedded server created it at start
        await js.delete_stream("FORGE")
        assert await ensure_streams(js) == ["created FORGE"]
        info = await js.stream_info("FORGE")
        assert info.config.storage == api.StorageType.FILE
        assert set(info.config.subjects or []) == {
            "forge.spawn.requested",
            "forge.scenario.*",
            "forge.score.finalized",
        }
        for subject in (SPAWN_REQUESTED, SCENARIO_SUBMIT, "forge.score.finalized"):
            ack = await js.publish(subject, b"{}")
            assert ack.stream == "FORGE"
        assert await ensure_streams(js) == []
        changed = replace(FORGE_STREAM, max_age_seconds=3600.0)
        assert await ensure_streams(js, (changed,)) == ["updated FORGE: max_age"]
        info = await js.stream_info("FORGE")
        assert info.config.max_age == pytest.approx(3600.0)
        assert info.state.messages == 3  # updating kept the stored events
    finally:
        await nc.close()


async def test_concurrent_ensure_from_several_processes(nats_server: NatsServer) -> None:
    clients = [await connect(nats_server.admin_url, f"t{i}") for i in range(4)]
    await clients[0].jetstream().delete_stream("FORGE")
    try:
        # JetStream treats an identical create as success, so several may report "created";
        # what matters is that none fails and exactly one stream exists.
        results = await asyncio.gather(*(ensure_streams(c.jetstream()) for c in clients))
        assert all(r in ([], ["created FORGE"]) for r in results)
        names = [s.config.name for s in await clients[0].jetstream().streams_info()]
        assert sorted(names) == ["FORGE", "FORGE_NODES"]  # FORGE_NODES: lab nodes' work
    finally:
        for c in clients:
            await c.close()


async def test_unfixable_difference_is_a_clear_error(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.admin_url, "t")
    js = nc.jetstream()
    try:
        await js.delete_stream("FORGE")
        await js.add_stream(
            name="FORGE", subjects=["forge.spawn.requested"], storage=api.StorageType.MEMORY
        )
        with pytest.raises(BusError, match="stream FORGE differs in subjects, storage"):
            await ensure_streams(js)
    finally:
        await nc.close()


async def test_a_service_without_the_right_waits_for_the_stream(nats_server: NatsServer) -> None:
    admin = await connect(nats_server.admin_url, "admin")
    spawn = await connect(nats_server.url, "spawn", credentials=nats_server.credentials("spawn"))
    try:
        await admin.jetstream().delete_stream("FORGE")
        with pytest.raises(BusError, match="does not exist yet"):
            await ensure_streams(spawn.jetstream(), manage=False)
        assert await ensure_streams(admin.jetstream()) == ["created FORGE"]
        assert await ensure_streams(spawn.jetstream(), manage=False) == []
    finally:
        await admin.close()
        await spawn.close()
