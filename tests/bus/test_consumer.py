"""Durable consumers: ack, backoff, dead letters, RetryLater, reconnects, shared work."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time

import pytest
from nats.aio.msg import Msg

from forge.bus import (
    BusOutcomeUnknown,
    BusUnavailable,
    DurableConsumer,
    Event,
    NatsServer,
    Publisher,
    Reject,
    RetryLater,
)
from forge.bus.dial import connect
from forge.bus.subjects import SCENARIO_SUBMIT, SPAWN_REQUESTED, scenario_subject
from tests.bus.helpers import Overlap, Recorder, make_consumer, wait_until


async def _publish_ids(
    publisher: Publisher, ids: list[str], subject: str = SPAWN_REQUESTED
) -> None:
    for ident in ids:
        await publisher.publish(subject, {"id": ident}, msg_id=f"msg-{ident}")


async def test_round_trip_and_status(nats_server: NatsServer, publisher: Publisher) -> None:
    rec = Recorder()
    consumer = make_consumer(nats_server, rec)
    before = consumer.status()
    assert before["connected"] is False and before["running"] is False
    assert await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["a", "b", "c"])
        await wait_until(lambda: consumer.status()["acked"] == 3)
        assert rec.ids() == ["a", "b", "c"]
        first = rec.events[0]
        assert first.subject == SPAWN_REQUESTED
        assert first.msg_id == "msg-a" and first.num_delivered == 1 and first.stream_seq == 1
        assert first.published_at is not None
        await consumer.refresh_pending()
        st = consumer.status()
        assert st["connected"] is True and st["running"] is True
        assert (st["delivered"], st["acked"], st["failed"], st["dead_lettered"]) == (3, 3, 0, 0)
        assert st["pending"] == 0 and st["ack_pending"] == 0
        assert st["last_message_at"] is not None and st["last_error"] is None
        assert rec.dead == []
    finally:
        await consumer.stop()
    assert consumer.status()["connected"] is False


async def test_only_its_subjects_are_consumed(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()
    consumer = make_consumer(
        nats_server, rec, subjects=(scenario_subject("completed"), scenario_subject("failed"))
    )
    await consumer.start(wait=5.0)
    try:
        await publisher.publish(scenario_subject("running"), {"id": "r"}, msg_id="m-r")
        await publisher.publish(scenario_subject("completed"), {"id": "c"}, msg_id="m-c")
        await publisher.publish(scenario_subject("failed"), {"id": "f"}, msg_id="m-f")
        await wait_until(lambda: len(rec.events) == 2)
        await asyncio.sleep(0.3)
        assert sorted(rec.ids()) == ["c", "f"]
    finally:
        await consumer.stop()


async def test_errors_back_off_then_dead_letter(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()
    attempts: list[float] = []

    async def failing(event: Event) -> None:
        attempts.append(time.monotonic())
        raise RuntimeError(f"cannot score {event.data['id']}")

    consumer = make_consumer(nats_server, rec, handler=failing, max_deliver=3, backoff=(0.3, 0.6))
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["x"])
        await wait_until(lambda: len(rec.dead) == 1)
        assert len(attempts) == 3
        assert attempts[1] - attempts[0] >= 0.28  # backoff[0]
        assert attempts[2] - attempts[1] >= 0.58  # backoff[1]
        event, error = rec.dead[0]
        assert event.data == {"id": "x"} and event.num_delivered == 3
        assert error == "RuntimeError: cannot score x"
        await asyncio.sleep(1.0)  # terminated: never delivered again
        assert len(attempts) == 3
        await consumer.refresh_pending()
        st = consumer.status()
        assert (st["delivered"], st["failed"], st["dead_lettered"], st["acked"]) == (3, 3, 1, 0)
        assert st["ack_pending"] == 0
        assert st["last_error"] == "RuntimeError: cannot score x"
    finally:
        await consumer.stop()


async def test_transient_error_is_redelivered_and_then_acked(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()
    seen: list[int] = []

    async def flaky(event: Event) -> None:
        seen.append(event.num_delivered)
        if event.num_delivered < 2:
            raise ConnectionError("store busy")
        await rec.handle(event)

    consumer = make_consumer(nats_server, rec, handler=flaky)
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["y"])
        await wait_until(lambda: consumer.status()["acked"] == 1)
        assert seen == [1, 2] and rec.dead == []
    finally:
        await consumer.stop()


async def test_retry_later_never_dead_letters(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()
    attempts: list[float] = []

    async def policy_down(event: Event) -> None:
        attempts.append(time.monotonic())
        if len(attempts) <= 4:  # more often than max_deliver=2
            raise RetryLater(0.25, "policy engine unreachable")
        await rec.handle(event)

    consumer = make_consumer(nats_server, rec, handler=policy_down, max_deliver=2)
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["z"])
        await wait_until(lambda: consumer.status()["acked"] == 1)
        assert len(attempts) == 5 and rec.dead == []
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert min(gaps) >= 0.23
        st = consumer.status()
        assert st["retried"] == 4 and st["failed"] == 0 and st["dead_lettered"] == 0
        assert rec.events[0].num_delivered == 5
    finally:
        await consumer.stop()


async def test_outage_retries_do_not_use_up_the_error_budget(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()
    outcomes: list[str] = []

    async def outage_then_bug(event: Event) -> None:
        if len(outcomes) < 4:
            outcomes.append("retry")
            raise RetryLater(0.05, "policy engine unreachable")
        outcomes.append("error")
        raise ValueError("bad template")

    consumer = make_consumer(nats_server, rec, handler=outage_then_bug, max_deliver=2)
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["o"])
        await wait_until(lambda: len(rec.dead) == 1)
        assert outcomes == ["retry"] * 4 + ["error"] * 2
        assert rec.dead[0][0].num_delivered == 6
        assert rec.dead[0][1] == "ValueError: bad template"
    finally:
        await consumer.stop()


async def test_poison_messages_are_dead_lettered_at_once(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()

    async def strict(event: Event) -> None:
        if event.data.get("id") == "bad":
            raise Reject("forged claims")
        await rec.handle(event)

    consumer = make_consumer(nats_server, rec, handler=strict, max_deliver=5)
    await consumer.start(wait=5.0)
    nc = await connect(nats_server.admin_url, "raw")
    try:
        await _publish_ids(publisher, ["bad"])
        await nc.jetstream().publish(SPAWN_REQUESTED, b"\xff not json")
        await nc.jetstream().publish(SPAWN_REQUESTED, b"[1, 2]")
        await _publish_ids(publisher, ["good"])
        await wait_until(lambda: len(rec.dead) == 3 and len(rec.events) == 1)
        errors = [err for _, err in rec.dead]
        assert errors[0] == "rejected: forged claims"
        assert errors[1].startswith("payload: not valid JSON")
        assert errors[2] == "payload: expected a JSON object, got list"
        assert rec.dead[1][0].raw == b"\xff not json"
        assert all(ev.num_delivered == 1 for ev, _ in rec.dead)
        assert rec.ids() == ["good"]
    finally:
        await nc.close()
        await consumer.stop()


async def test_failing_dead_letter_hook_keeps_the_message(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()
    hook_calls = 0

    async def reject_all(event: Event) -> None:
        raise Reject("never valid")

    async def store_down_once(event: Event, error: str) -> None:
        nonlocal hook_calls
        hook_calls += 1
        if hook_calls == 1:
            raise OSError("failed-event store unreachable")
        await rec.dead_letter(event, error)

    consumer = DurableConsumer(
        nats_server.admin_url,
        durable="hooktest",
        subjects=[SPAWN_REQUESTED],
        handler=reject_all,
        on_dead_letter=store_down_once,
        backoff=(0.2,),
        fetch_timeout=0.5,
    )
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["keep"])
        await wait_until(lambda: len(rec.dead) == 1)
        assert hook_calls == 2 and rec.dead[0][0].num_delivered == 2
        assert consumer.status()["dead_lettered"] == 1
    finally:
        await consumer.stop()


async def test_slow_handler_keeps_its_message(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    """A handler longer than ack_wait is not redelivered elsewhere (in-progress heartbeats)."""
    rec_a, rec_b = Recorder(), Recorder()

    # Twice ack_wait: without heartbeats it would go to b. An ack_wait of 3 s leaves a beat
    # (every ack_wait/3) two seconds of slack on a loaded machine.
    async def slow(event: Event) -> None:
        await asyncio.sleep(6.5)
        await rec_a.handle(event)

    a = make_consumer(nats_server, rec_a, handler=slow, durable="slow", ack_wait=3.0)
    b = make_consumer(nats_server, rec_b, durable="slow", ack_wait=3.0)
    await a.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["long"])
        await wait_until(lambda: a.status()["delivered"] == 1)
        await b.start(wait=5.0)
        await wait_until(lambda: a.status()["acked"] == 1, timeout=20.0)
        await asyncio.sleep(0.5)
        assert rec_b.events == [] and rec_a.ids() == ["long"]
    finally:
        await a.stop()
        await b.stop()


async def test_a_heartbeat_that_swallows_its_cancel_does_not_hold_the_message(
    nats_server: NatsServer, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's "in progress" send may swallow the cancellation that ends the heartbeat
    (as `asyncio.wait_for` does on 3.11): the message is still acked and the worker goes on."""
    rec = Recorder()
    sending = asyncio.Event()

    async def swallowing_in_progress(self: Msg) -> None:
        sending.set()
        with contextlib.suppress(asyncio.CancelledError):  # dropped, as wait_for may
            await asyncio.sleep(30)

    async def until_heartbeat(event: Event) -> None:
        await asyncio.wait_for(sending.wait(), 10)
        await rec.handle(event)

    monkeypatch.setattr(Msg, "in_progress", swallowing_in_progress)
    # The first beat comes at ack_wait/3: the ack must still land within ack_wait.
    consumer = make_consumer(nats_server, rec, handler=until_heartbeat, ack_wait=3.0)
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["held"])
        await wait_until(lambda: consumer.status()["acked"] == 1, timeout=10.0)
        sending.clear()
        await _publish_ids(publisher, ["next"])
        await wait_until(lambda: consumer.status()["acked"] == 2, timeout=10.0)
        assert rec.ids() == ["held", "next"]
    finally:
        await asyncio.wait_for(consumer.stop(grace=1.0), 10)


async def test_handler_timeout_counts_as_failure(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()

    async def hang(event: Event) -> None:
        await asyncio.sleep(30)

    consumer = make_consumer(nats_server, rec, handler=hang, handler_timeout=0.2, max_deliver=1)
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["t"])
        await wait_until(lambda: len(rec.dead) == 1)
        assert rec.dead[0][1].startswith("TimeoutError")
    finally:
        await consumer.stop()


async def test_replicas_share_work_without_duplicates(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    recs = [Recorder(), Recorder()]

    def slowish(rec: Recorder):  # type: ignore[no-untyped-def]
        async def handle(event: Event) -> None:
            await asyncio.sleep(0.01)
            await rec.handle(event)

        return handle

    consumers = [
        make_consumer(nats_server, rec, handler=slowish(rec), durable="shared") for rec in recs
    ]
    for c in consumers:
        assert await c.start(wait=5.0)
    try:
        ids = [f"e{i}" for i in range(40)]
        await _publish_ids(publisher, ids)
        await wait_until(lambda: sum(len(r.events) for r in recs) == 40)
        await asyncio.sleep(0.5)
        seen = recs[0].ids() + recs[1].ids()
        assert sorted(seen) == sorted(ids)  # every event, each exactly once
        assert all(len(r.events) > 0 for r in recs)
    finally:
        for c in consumers:
            await c.stop()


@pytest.mark.parametrize("outage", ["stop", "kill"])
async def test_server_restart_mid_stream_loses_nothing(
    nats_server: NatsServer, publisher: Publisher, outage: str
) -> None:
    rec = Recorder()

    async def steady(event: Event) -> None:
        await asyncio.sleep(0.02)
        await rec.handle(event)

    consumer = make_consumer(nats_server, rec, handler=steady, ack_wait=2.0)
    await consumer.start(wait=5.0)
    try:
        before = [f"b{i}" for i in range(30)]
        await _publish_ids(publisher, before)
        await wait_until(lambda: len(rec.events) >= 5)
        await asyncio.to_thread(getattr(nats_server, outage))  # graceful stop or SIGKILL
        await wait_until(lambda: not consumer.status()["connected"], timeout=3.0)
        # The publisher's own client must have seen the outage too: a publish written
        # before it noticed sits in nats-py's buffer, is sent after the reconnect, and is
        # rightly reported as BusOutcomeUnknown (it may be stored). A publish during a
        # known outage must fail as plainly unavailable, and then nothing is stored.
        await wait_until(lambda: not publisher.connection.ready, timeout=3.0)
        with pytest.raises(BusUnavailable) as refused:
            await _publish_ids(publisher, ["lost"])
        assert not isinstance(refused.value, BusOutcomeUnknown)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(nats_server.start)
        await wait_until(lambda: consumer.status()["connected"], timeout=5.0)
        assert await publisher.connection.wait_ready(5.0)
        after = [f"a{i}" for i in range(10)]
        await _publish_ids(publisher, after)
        await wait_until(lambda: set(before + after) <= set(rec.ids()), timeout=15.0)
        assert "lost" not in rec.ids()
        st = consumer.status()
        assert st["reconnects"] == 1 and st["connected"] is True
    finally:
        await consumer.stop()


async def test_starts_while_nats_is_down_and_catches_up(nats_server: NatsServer) -> None:
    rec = Recorder()
    async with Publisher(nats_server.admin_url) as pub:
        assert await pub.connection.wait_ready(5.0)
        await _publish_ids(pub, ["p1", "p2"])  # pending before the subscriber exists
    await asyncio.to_thread(nats_server.stop)
    consumer = make_consumer(nats_server, rec, connect_timeout=0.3, reconnect_wait=0.2)
    assert await consumer.start(wait=0.5) is False
    try:
        st = consumer.status()
        assert st["running"] is True and st["connected"] is False
        assert st["last_error"] is not None
        await asyncio.to_thread(nats_server.start)
        await wait_until(lambda: sorted(rec.ids()) == ["p1", "p2"], timeout=10.0)
        assert consumer.status()["connected"] is True
    finally:
        await consumer.stop()


async def test_restart_subscriber(nats_server: NatsServer, publisher: Publisher) -> None:
    rec = Recorder()
    consumer = make_consumer(nats_server, rec)
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["r1"])
        await wait_until(lambda: consumer.status()["acked"] == 1)
        assert await consumer.restart()
        await _publish_ids(publisher, ["r2"])
        await wait_until(lambda: consumer.status()["acked"] == 2)
        assert rec.ids() == ["r1", "r2"]
        st = consumer.status()
        assert st["restarts"] == 1 and st["connected"] is True
        assert st["delivered"] == 2 and st["acked"] == 2
    finally:
        await consumer.stop()


async def test_stop_lets_running_handler_finish(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()
    started = asyncio.Event()

    async def busy(event: Event) -> None:
        started.set()
        await asyncio.sleep(0.4)
        await rec.handle(event)

    consumer = make_consumer(nats_server, rec, handler=busy)
    await consumer.start(wait=5.0)
    await _publish_ids(publisher, ["s"])
    await asyncio.wait_for(started.wait(), 5.0)
    await consumer.stop(grace=5.0)
    assert rec.ids() == ["s"] and consumer.status()["acked"] == 1
    # and it is not redelivered to the next subscriber
    rec2 = Recorder()
    again = make_consumer(nats_server, rec2)
    await again.start(wait=5.0)
    await asyncio.sleep(0.7)
    await again.stop()
    assert rec2.events == []


def test_bad_settings_name_the_field(nats_server: NatsServer) -> None:
    rec = Recorder()
    with pytest.raises(ValueError, match="durable"):
        make_consumer(nats_server, rec, durable="has space")
    with pytest.raises(ValueError, match="max_deliver"):
        make_consumer(nats_server, rec, max_deliver=0)
    with pytest.raises(ValueError, match="backoff"):
        make_consumer(nats_server, rec, backoff=())
    with pytest.raises(ValueError, match="subject"):
        make_consumer(nats_server, rec, subjects=("bad subject",))
    with pytest.raises(ValueError, match="concurrency"):
        make_consumer(nats_server, rec, concurrency=0)
    with pytest.raises(ValueError, match="delay"):
        RetryLater(-1)
    with pytest.raises(ValueError, match="url"):
        DurableConsumer(
            "http://127.0.0.1:4222",
            durable="d",
            subjects=[SPAWN_REQUESTED],
            handler=rec.handle,
            on_dead_letter=rec.dead_letter,
        )


async def test_concurrency_runs_handlers_in_parallel(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Overlap()
    consumer = make_consumer(nats_server, rec, concurrency=4)
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, [f"c{i}" for i in range(8)])
        await wait_until(lambda: consumer.status()["acked"] == 8)
        assert rec.peak == 4
    finally:
        await consumer.stop()


async def test_changed_subjects_of_an_existing_durable_apply(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    rec = Recorder()
    first = make_consumer(nats_server, rec, durable="evolving")
    await first.start(wait=5.0)
    await first.stop()
    wider = make_consumer(
        nats_server, rec, durable="evolving", subjects=(SPAWN_REQUESTED, SCENARIO_SUBMIT)
    )
    await wider.start(wait=5.0)
    try:
        await publisher.publish(SCENARIO_SUBMIT, {"id": "sub"}, msg_id="m-sub")
        await wait_until(lambda: rec.ids() == ["sub"])
    finally:
        await wider.stop()


async def test_recovers_when_server_returns_with_an_empty_store(
    nats_server: NatsServer, publisher: Publisher
) -> None:
    """E.g. `forge up` restarted NATS on a fresh store: streams and consumer are recreated."""
    rec = Recorder()
    consumer = make_consumer(nats_server, rec, reconnect_wait=0.2)
    await consumer.start(wait=5.0)
    try:
        await _publish_ids(publisher, ["old"])
        await wait_until(lambda: consumer.status()["acked"] == 1)
        await asyncio.to_thread(nats_server.stop)
        shutil.rmtree(nats_server.store_dir / "js")
        await asyncio.to_thread(nats_server.start)
        assert await publisher.connection.wait_ready(5.0)

        async def publish_when_stream_back() -> None:
            while True:
                try:
                    await _publish_ids(publisher, ["new"])
                    return
                except BusUnavailable:
                    await asyncio.sleep(0.1)

        await asyncio.wait_for(publish_when_stream_back(), 10.0)
        await wait_until(lambda: rec.ids() == ["old", "new"], timeout=10.0)
        assert consumer.status()["connected"] is True
    finally:
        await consumer.stop()


def test_replay_rebuilds_a_stored_event() -> None:
    event = Event.replay(SPAWN_REQUESTED, b'{"id":"again"}', msg_id="m-1", stream_seq=7)
    assert (event.subject, event.data, event.msg_id, event.stream_seq) == (
        SPAWN_REQUESTED,
        {"id": "again"},
        "m-1",
        7,
    )
    with pytest.raises(ValueError, match="payload"):
        Event.replay(SPAWN_REQUESTED, b"not json")
