"""Idle consumers park every worker but the first; what parking must not cost.

A burst still reaches every handler, and a message the server hands to a worker's pull
just after that worker stopped waiting (the pull's expiry runs on the server's clock, so
with network latency it outlives the client's timeout) is handled from the worker's own
queue, once, not left there until the bus redelivers it after ack_wait.

Real nats-server. The latency is emulated by lengthening each pull's server-side expiry
by 20 ms (what a 20 ms gap between the client's clock and the server receiving the pull
does), a stand-in for a consumer whose stream leader is another machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from nats.js.client import JetStreamContext

from forge.bus import Event, NatsServer, Publisher
from forge.bus.subjects import SPAWN_REQUESTED
from tests.bus.helpers import Overlap, Recorder, make_consumer, wait_until

LATENCY_NS = 20_000_000


@pytest.fixture
def slow_pulls() -> Iterator[None]:
    original = JetStreamContext.PullSubscription._fetch_one

    async def later(self: Any, expires: int | None, timeout: float | None,
                    heartbeat: float | None = None) -> Any:
        return await original(self, expires + LATENCY_NS if expires else expires, timeout,
                              heartbeat)

    JetStreamContext.PullSubscription._fetch_one = later  # type: ignore[method-assign]
    try:
        yield
    finally:
        JetStreamContext.PullSubscription._fetch_one = original  # type: ignore[method-assign]


async def test_a_burst_after_idle_runs_every_handler(nats_server: NatsServer,
                                                     publisher: Publisher) -> None:
    recorder = Overlap()
    consumer = make_consumer(nats_server, recorder, fetch_timeout=0.1,
                             concurrency=4)
    await consumer.start(wait=5.0)
    try:
        await asyncio.sleep(1.0)  # idle: workers 1-3 park
        for n in range(8):
            await publisher.publish(SPAWN_REQUESTED, {"id": n}, msg_id=f"burst-{n}")
        await wait_until(lambda: recorder.peak == 4, timeout=30)
    finally:
        await consumer.stop()


@pytest.mark.usefixtures("slow_pulls")
async def test_a_late_delivery_to_a_parked_worker_is_handled_once(
        nats_server: NatsServer, publisher: Publisher) -> None:
    recorder = Recorder()
    deliveries: dict[str, list[int]] = {}

    async def handle(event: Event) -> None:
        deliveries.setdefault(str(event.msg_id), []).append(event.num_delivered)
        await recorder.handle(event)

    consumer = make_consumer(nats_server, recorder, handler=handle, fetch_timeout=0.05,
                             concurrency=4, ack_wait=3.0, backoff=(0.2,))
    await consumer.start(wait=5.0)
    try:
        for n in range(6):
            first, second = f"first-{n}", f"second-{n}"
            await publisher.publish(SPAWN_REQUESTED, {"id": first}, msg_id=first)
            await wait_until(lambda: first in deliveries, timeout=30)  # noqa: B023
            # the workers' fetches now time out in turn, some of them with the next
            # message already on its way to their pull
            await asyncio.sleep(0.053 + 0.002 * n)
            await publisher.publish(SPAWN_REQUESTED, {"id": second}, msg_id=second)
            await wait_until(lambda: second in deliveries, timeout=30)  # noqa: B023
        await asyncio.sleep(3.5)  # past ack_wait: a message left unacked would come again
        assert {k: v for k, v in deliveries.items() if v != [1]} == {}
    finally:
        await consumer.stop()


async def test_parked_workers_send_no_pull_requests(nats_server: NatsServer,
                                                    publisher: Publisher) -> None:
    """While idle only the first worker renews a pull, and a parked worker sets no timer:
    the server's "408 Request Timeout" notice of its last pull (one arrives after every
    idle pull), which the first worker finds in its queue, is not a reason to fetch. Each
    parked worker used to renew a pull every park period (14 of them were two thirds of an
    idle orchestrator's requests to nats-server), then to wake every park period to look at
    its own queue (1.3 wake-ups a second of an idle orchestrator; issue 19 item 5)."""
    fetching: dict[int, int] = {}
    original = JetStreamContext.PullSubscription.fetch

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        fetching[id(self)] = fetching.get(id(self), 0) + 1
        return await original(self, *args, **kwargs)

    loop = asyncio.get_running_loop()
    timers: dict[str, int] = {}
    call_at = loop.call_at

    def timer_counted(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        name = task.get_name() if task is not None else ""
        timers[name] = timers.get(name, 0) + 1
        return call_at(when, callback, *args, **kwargs)

    recorder = Recorder()
    # ack_wait 0.6 s: a parked worker used to look at its queue every 0.2 s
    consumer = make_consumer(nats_server, recorder, fetch_timeout=0.1, concurrency=4,
                             ack_wait=0.6)
    JetStreamContext.PullSubscription.fetch = counted  # type: ignore[method-assign]
    try:
        await consumer.start(wait=5.0)
        await wait_until(lambda: len(fetching) == 4, timeout=30)  # every worker pulled once
        await asyncio.sleep(1.0)  # all but the first park
        before = dict(fetching)
        loop.call_at = timer_counted  # type: ignore[method-assign]
        await asyncio.sleep(2.0)  # ten park periods
        loop.call_at = call_at  # type: ignore[method-assign]
        renewed = {sub for sub, n in fetching.items() if n > before[sub]}
        assert len(renewed) == 1, (before, fetching)  # the first worker's pull only
        parked = {name: n for name, n in timers.items()
                  if "-worker-" in name and not name.endswith("-worker-0")}
        assert parked == {}, timers  # no parked worker woke on a timer
        assert any(name.endswith("-worker-0") for name in timers), timers  # it was idle
        # and a message still reaches a handler at once, then every worker is awake again
        await publisher.publish(SPAWN_REQUESTED, {"id": 1}, msg_id="after-idle")
        await wait_until(lambda: len(recorder.events) == 1, timeout=30)
    finally:
        JetStreamContext.PullSubscription.fetch = original  # type: ignore[method-assign]
        loop.call_at = call_at  # type: ignore[method-assign]
        await consumer.stop()
