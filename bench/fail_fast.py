"""How fast the outage paths give up: the figures the tests no longer time.

    .venv/bin/python bench/fail_fast.py [--calls 200] [--runs 3]

The tests assert the behaviour (no connection attempted, no acknowledgement wait entered);
this prints what it costs: median wall time and CPU per call, over several runs, of
  - RemoteEngine.decide making one refused connection attempt (the reference),
  - RemoteEngine.decide with its circuit breaker open (no network attempt), and
  - Publisher.publish once a first connection attempt to an unreachable NATS failed
    (the caller is not held up waiting for a connection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import time
from collections.abc import Callable

from forge.bus import BusUnavailable, Publisher
from forge.bus.ports import free_port
from forge.bus.subjects import SPAWN_REQUESTED
from forge.policy import CircuitBreaker, PolicyUnavailable, RemoteEngine


def _free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _per_call(fn: Callable[[], None], calls: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per call of `fn`, over `calls` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return ((time.perf_counter() - wall) * 1000 / calls,
            (time.process_time() - cpu) * 1000 / calls)


def refused_attempt(calls: int) -> tuple[float, float]:
    """Per-call cost of one real (refused) connection attempt: the open breaker's reference."""
    remote = RemoteEngine(_free_url(), retries=0, timeout=1.0,
                          breaker=CircuitBreaker(threshold=10**9, reset_after=1))

    def attempt() -> None:
        try:
            remote.decide("forge.training", {})
        except PolicyUnavailable:
            return

    try:
        return _per_call(attempt, calls)
    finally:
        remote.close()


def open_breaker(calls: int) -> tuple[float, float]:
    """Per-call cost of a decision refused by an open breaker."""
    breaker = CircuitBreaker(threshold=1, reset_after=3600)
    remote = RemoteEngine(_free_url(), retries=0, timeout=1.0, breaker=breaker)
    try:
        with contextlib.suppress(PolicyUnavailable):
            remote.decide("forge.training", {})
        assert breaker.state == "open"

        def refused() -> None:
            try:
                remote.decide("forge.training", {})
            except PolicyUnavailable:
                return
            raise AssertionError("the open breaker let a decision through")

        return _per_call(refused, calls)
    finally:
        remote.close()


async def _unreachable_publish(calls: int) -> tuple[float, float]:
    pub = Publisher(f"nats://127.0.0.1:{free_port()}", timeout=0.5, connect_timeout=0.3)
    try:
        with contextlib.suppress(BusUnavailable):  # the one attempt that waits (0.5 s)
            await pub.publish(SPAWN_REQUESTED, {"n": 0}, msg_id="warm-0")
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(calls):
            try:
                await pub.publish(SPAWN_REQUESTED, {"n": i}, msg_id=f"b-{i}", timeout=600)
            except BusUnavailable:
                continue
            raise AssertionError("an unreachable bus stored an event")
        return ((time.perf_counter() - wall) * 1000 / calls,
                (time.process_time() - cpu) * 1000 / calls)
    finally:
        await pub.close()


def main() -> None:
    """Run each path `--runs` times and print medians per call."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = {
        "policy decide, one refused try": [refused_attempt(args.calls) for _ in range(args.runs)],
        "policy decide, breaker open": [open_breaker(args.calls) for _ in range(args.runs)],
        "publish, bus unreachable": [asyncio.run(_unreachable_publish(args.calls))
                                     for _ in range(args.runs)],
    }
    print(f"median of {args.runs} run(s) x {args.calls} call(s)")
    medians: dict[str, tuple[float, float]] = {}
    for name, runs in rows.items():
        medians[name] = (statistics.median(r[0] for r in runs),
                         statistics.median(r[1] for r in runs))
        wall, cpu = medians[name]
        print(f"  {name:32s} wall {wall:8.3f} ms/call   CPU {cpu:8.3f} ms/call")
    tried = medians["policy decide, one refused try"]
    skipped = medians["policy decide, breaker open"]
    print(f"  ratio refused try / breaker open: wall {tried[0] / max(skipped[0], 1e-9):.0f}x, "
          f"CPU {tried[1] / max(skipped[1], 1e-9):.0f}x")


if __name__ == "__main__":
    main()
