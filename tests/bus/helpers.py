"""Helpers shared by the bus tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from forge.bus import DurableConsumer, Event, NatsServer


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `cond` until true; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


class Recorder:
    """Handler and dead-letter hook that record what they saw."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.times: list[float] = []
        self.dead: list[tuple[Event, str]] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)
        self.times.append(time.monotonic())

    async def dead_letter(self, event: Event, error: str) -> None:
        self.dead.append((event, error))

    def ids(self) -> list[str]:
        return [str(e.data["id"]) for e in self.events]


class Overlap(Recorder):
    """A recorder whose handler holds each event a while: ``peak`` is the most handlers
    that ever ran at once (what a consumer's concurrency allows)."""

    def __init__(self, hold_s: float = 0.3) -> None:
        super().__init__()
        self.hold_s = hold_s
        self.running = 0
        self.peak = 0

    async def handle(self, event: Event) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.hold_s)
        finally:
            self.running -= 1
        await super().handle(event)


def make_consumer(
    server: NatsServer,
    recorder: Recorder,
    *,
    handler: Callable[[Event], object] | None = None,
    durable: str = "test-durable",
    subjects: tuple[str, ...] = ("forge.spawn.requested",),
    **kwargs: object,
) -> DurableConsumer:
    """A consumer with test-sized timings (short fetch, short backoff)."""
    options: dict[str, object] = {"fetch_timeout": 0.5, "backoff": (0.2, 0.4), "max_deliver": 3}
    options.update(kwargs)
    return DurableConsumer(
        server.admin_url,
        durable=durable,
        subjects=subjects,
        handler=handler or recorder.handle,  # type: ignore[arg-type]
        on_dead_letter=recorder.dead_letter,
        **options,  # type: ignore[arg-type]
    )
