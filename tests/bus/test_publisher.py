"""Confirmed, de-duplicated publishing and the BusUnavailable contract."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable

import pytest

from forge.bus import BusOutcomeUnknown, BusUnavailable, NatsServer, PublishAck, Publisher
from forge.bus.dial import connect, redact_url
from forge.bus.ports import free_port
from forge.bus.subjects import SPAWN_REQUESTED, scenario_subject
from tests.bus.helpers import wait_until

LONG_ACK_S = 600.0  # an acknowledgement wait no test may sit out
GUARD_S = 30.0  # generous: what must not wait gives up in well under a second


async def _guarded(publish: Awaitable[PublishAck]) -> PublishAck:
    """Await a publish, failing clearly if it sits on its connection or ack wait."""
    try:
        return await asyncio.wait_for(publish, GUARD_S)
    except TimeoutError:
        pytest.fail(f"publish was still waiting after {GUARD_S:.0f}s instead of giving up")


async def _stream_messages(server: NatsServer) -> int:
    nc = await connect(server.admin_url, "probe")
    try:
        info = await nc.jetstream().stream_info("FORGE")
        return int(info.state.messages)
    finally:
        await nc.close()


async def test_publish_is_stored_with_id_and_json(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    ack = await publisher.publish(
        SPAWN_REQUESTED,
        {"scenario_id": "scn-0123456789abcdef", "track": "netplus"},
        msg_id="req-1",
        headers={"Forge-Correlation-Id": "c-1"},
    )
    assert (ack.stream, ack.seq, ack.duplicate) == ("FORGE", 1, False)
    nc = await connect(nats_server.admin_url, "probe")
    try:
        raw = await nc.jetstream().get_msg("FORGE", 1)
    finally:
        await nc.close()
    assert raw.subject == SPAWN_REQUESTED
    assert json.loads(raw.data or b"") == {
        "scenario_id": "scn-0123456789abcdef",
        "track": "netplus",
    }
    assert raw.headers is not None
    assert raw.headers["Nats-Msg-Id"] == "req-1"
    assert raw.headers["Forge-Correlation-Id"] == "c-1"
    assert raw.headers["Content-Type"] == "application/json"


async def test_same_msg_id_is_deduplicated(nats_server: NatsServer, publisher: Publisher) -> None:
    first = await publisher.publish(SPAWN_REQUESTED, {"n": 1}, msg_id="spawn-abc")
    again = await publisher.publish(SPAWN_REQUESTED, {"n": 1}, msg_id="spawn-abc")
    other = await publisher.publish(SPAWN_REQUESTED, {"n": 2}, msg_id="spawn-def")
    assert not first.duplicate and again.duplicate and not other.duplicate
    assert again.seq == first.seq
    assert await _stream_messages(nats_server) == 2


async def test_stopped_server_gives_bus_unavailable_fast(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    await publisher.publish(scenario_subject("running"), {"ok": True}, msg_id="a-1")
    nats_server.stop()
    # Sent before the client noticed the server went: it gives up after its own 1 s
    # acknowledgement wait (the outcome is unknown to it), or at once if it already knew.
    with pytest.raises(BusUnavailable) as raised:
        await _guarded(publisher.publish(scenario_subject("running"), {"ok": True},
                                         msg_id="a-2"))
    if isinstance(raised.value, BusOutcomeUnknown):
        assert "within 1.0s" in str(raised.value)
    await wait_until(lambda: not publisher.connected)
    # Known to be down: nothing is sent and the long acknowledgement wait is never entered;
    # only a bounded reconnect grace (far under the guard) passes before it gives up.
    with pytest.raises(BusUnavailable, match="not connected") as raised:
        await _guarded(publisher.publish(scenario_subject("running"), {"ok": True},
                                         msg_id="a-3", timeout=LONG_ACK_S))
    assert not isinstance(raised.value, BusOutcomeUnknown)
    assert publisher.status()["connected"] is False


async def test_publisher_recovers_after_server_restart(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    nats_server.stop()
    # Once the client knows the server is gone, the publish fails without sending anything
    # (one written before it noticed would be buffered, resent after the reconnect and
    # reported as BusOutcomeUnknown; then the retry below would rightly be a duplicate).
    await wait_until(lambda: not publisher.connected)
    with pytest.raises(BusUnavailable) as refused:
        await publisher.publish(SPAWN_REQUESTED, {"n": 1}, msg_id="r-1")
    assert not isinstance(refused.value, BusOutcomeUnknown)
    nats_server.start()
    await publisher.connection.wait_ready(5.0)
    ack = await publisher.publish(SPAWN_REQUESTED, {"n": 1}, msg_id="r-1")
    assert ack.seq == 1 and not ack.duplicate
    assert publisher.status()["reconnects"] == 1


async def test_unreachable_url_fails_within_bound() -> None:
    pub = Publisher(f"nats://127.0.0.1:{free_port()}", timeout=0.5, connect_timeout=0.3)
    try:
        # A first publish waits for the first connection at most its own timeout.
        with pytest.raises(BusUnavailable, match="not connected"):
            await _guarded(pub.publish(SPAWN_REQUESTED, {"n": 1}, msg_id="x-1"))
        await wait_until(lambda: pub.status()["last_error"] is not None)
        assert not pub.connected
        # Once a connect attempt failed, callers are not held up: a publish does not wait
        # for a connection at all (with this timeout, waiting would run into the guard).
        with pytest.raises(BusUnavailable, match="not connected"):
            await _guarded(pub.publish(SPAWN_REQUESTED, {"n": 1}, msg_id="x-2",
                                       timeout=LONG_ACK_S))
    finally:
        await pub.close()


async def test_no_stream_for_subject_is_unavailable(publisher: Publisher) -> None:
    with pytest.raises(BusUnavailable, match="no JetStream stream"):
        await publisher.publish("other.subject", {"n": 1}, msg_id="o-1")


async def test_bad_input_names_the_field(publisher: Publisher) -> None:
    with pytest.raises(ValueError, match="msg_id"):
        await publisher.publish(SPAWN_REQUESTED, {}, msg_id="has space")
    with pytest.raises(ValueError, match="msg_id"):
        await publisher.publish(SPAWN_REQUESTED, {}, msg_id="")
    with pytest.raises(ValueError, match="subject"):
        await publisher.publish("forge.>", {}, msg_id="m-1")
    with pytest.raises(TypeError, match="data: not JSON-serialisable"):
        await publisher.publish(SPAWN_REQUESTED, {"x": object()}, msg_id="m-1")
    with pytest.raises(TypeError, match="data: an event must be a JSON object"):
        await publisher.publish(SPAWN_REQUESTED, [1, 2], msg_id="m-1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="headers"):
        await publisher.publish(SPAWN_REQUESTED, {}, msg_id="m-1", headers={"Nats-Msg-Id": "x"})
    with pytest.raises(ValueError, match="headers"):
        await publisher.publish(SPAWN_REQUESTED, {}, msg_id="m-1", headers={"X-A": "a\r\nb"})
    with pytest.raises(ValueError, match=r"data: event is \d+ bytes, above the server's limit"):
        await publisher.publish(SPAWN_REQUESTED, {"blob": "x" * 2_000_000}, msg_id="m-1")


async def test_connect_errors_never_show_credentials() -> None:
    url = f"nats://operator:s3cr3t-value@127.0.0.1:{free_port()}"
    assert redact_url(url) == url.replace("operator:s3cr3t-value@", "")
    with pytest.raises(BusUnavailable) as info:
        await connect(url, "t", timeout=0.3)
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ValueError, match="url"):
        Publisher("http://127.0.0.1:4222")
    # nats-py's WebSocket transport needs aiohttp, which is not shipped: refused, not hung
    with pytest.raises(ValueError, match="not a nats:// or tls:// URL"):
        Publisher("ws://127.0.0.1:8080")
