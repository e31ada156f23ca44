"""Subscriber metrics as Prometheus sees them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from forge.bus import Event, NatsServer, Publisher, register_consumer_metrics
from forge.bus.subjects import SPAWN_REQUESTED
from tests.bus.helpers import Recorder, make_consumer, wait_until


async def test_consumer_metrics_are_exported(nats_server: NatsServer, publisher: Publisher) -> None:
    rec = Recorder()

    async def second_fails(event: Event) -> None:
        if event.data["id"] == "bad":
            raise RuntimeError("boom")
        await rec.handle(event)

    consumer = make_consumer(nats_server, rec, handler=second_fails, max_deliver=1)
    registry = CollectorRegistry()
    register_consumer_metrics(registry, lambda: [consumer])
    text = generate_latest(registry).decode()
    assert 'forge_bus_consumer_connected{durable="test-durable"} 0.0' in text
    await consumer.start(wait=5.0)
    try:
        for ident in ("ok", "bad"):
            await publisher.publish(SPAWN_REQUESTED, {"id": ident}, msg_id=f"m-{ident}")
        await wait_until(lambda: consumer.status()["dead_lettered"] == 1)
        await consumer.refresh_pending()
        text = generate_latest(registry).decode()
    finally:
        await consumer.stop()
    assert 'forge_bus_consumer_connected{durable="test-durable"} 1.0' in text
    assert 'forge_bus_consumer_messages_total{durable="test-durable",outcome="acked"} 1.0' in text
    assert 'forge_bus_consumer_messages_total{durable="test-durable",outcome="failed"} 1.0' in text
    assert (
        'forge_bus_consumer_messages_total{durable="test-durable",outcome="dead_lettered"} 1.0'
        in text
    )
    assert 'forge_bus_consumer_pending{durable="test-durable"} 0.0' in text
    assert "forge_bus_consumer_last_message_timestamp_seconds{" in text
