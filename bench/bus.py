"""Event-bus benchmark: confirmed publishes/s, consume rate and end-to-end latency.

Runs against a real embedded nats-server (JetStream, file storage) on loopback:

    .venv/bin/python bench/bus.py [--runs 3] [--messages 2000]

Prints the median over runs of each figure and the speed-up ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from forge.bus import DurableConsumer, Event, NatsServer, Publisher
from forge.bus.subjects import SPAWN_REQUESTED


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _publish_sequential(pub: Publisher, n: int, tag: str) -> tuple[float, list[float]]:
    lat: list[float] = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        await pub.publish(SPAWN_REQUESTED, {"i": i, "t": time.time()}, msg_id=f"{tag}-{i}")
        lat.append(time.perf_counter() - t0)
    return n / (time.perf_counter() - start), lat


async def _publish_concurrent(pub: Publisher, n: int, tag: str, width: int = 32) -> float:
    sem = asyncio.Semaphore(width)

    async def one(i: int) -> None:
        async with sem:
            await pub.publish(SPAWN_REQUESTED, {"i": i, "t": time.time()}, msg_id=f"{tag}-{i}")

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start)


async def _drain(url: str, durable: str, n: int, concurrency: int) -> float:
    done = asyncio.Event()
    count = 0

    async def handle(event: Event) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    async def dead(event: Event, error: str) -> None:
        raise RuntimeError(error)

    consumer = DurableConsumer(
        url,
        durable=durable,
        subjects=[SPAWN_REQUESTED],
        handler=handle,
        on_dead_letter=dead,
        concurrency=concurrency,
        fetch_timeout=1.0,
    )
    start = time.perf_counter()
    await consumer.start()
    await asyncio.wait_for(done.wait(), 120)
    rate = n / (time.perf_counter() - start)
    await consumer.stop()
    return rate


async def _end_to_end(url: str, pub: Publisher, n: int, tag: str) -> list[float]:
    lat: list[float] = []
    got = asyncio.Event()

    async def handle(event: Event) -> None:
        if str(event.msg_id).startswith(tag):
            lat.append(time.time() - float(event.data["t"]))
            got.set()

    async def dead(event: Event, error: str) -> None:
        raise RuntimeError(error)

    consumer = DurableConsumer(
        url,
        durable=f"e2e-{tag}",
        subjects=[SPAWN_REQUESTED],
        handler=handle,
        on_dead_letter=dead,
        fetch_timeout=1.0,
    )
    await consumer.start(wait=5.0)
    # Start from the current end so the backlog of other phases does not count.
    while (await consumer.refresh_pending()) not in (0, None):
        await asyncio.sleep(0.05)
    for i in range(n):
        got.clear()
        await pub.publish(SPAWN_REQUESTED, {"t": time.time()}, msg_id=f"{tag}-{i}")
        await asyncio.wait_for(got.wait(), 10)
    await consumer.stop()
    return lat


async def _run(messages: int, run: int) -> dict[str, float]:
    with NatsServer() as server:
        async with Publisher(server.admin_url, timeout=5.0) as pub:
            assert await pub.connection.wait_ready(10.0)
            seq_rate, seq_lat = await _publish_sequential(pub, messages, f"s{run}")
            conc_rate = await _publish_concurrent(pub, messages, f"c{run}")
            total = 2 * messages
            drain1 = await _drain(server.admin_url, "drain1", total, 1)
            drain4 = await _drain(server.admin_url, "drain4", total, 4)
            e2e = await _end_to_end(server.admin_url, pub, min(500, messages), f"e{run}")
    return {
        "publish_seq_per_s": seq_rate,
        "publish_p50_ms": statistics.median(seq_lat) * 1e3,
        "publish_p99_ms": _pct(seq_lat, 0.99) * 1e3,
        "publish_conc32_per_s": conc_rate,
        "consume_c1_per_s": drain1,
        "consume_c4_per_s": drain4,
        "e2e_p50_ms": statistics.median(e2e) * 1e3,
        "e2e_p99_ms": _pct(e2e, 0.99) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    for i in range(args.runs):
        runs.append(asyncio.run(_run(args.messages, i)))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"bus benchmark: {args.runs} runs x {args.messages} messages, medians")
    for key, value in med.items():
        print(f"  {key:24s} {value:10.1f}")
    pub_ratio = med["publish_conc32_per_s"] / med["publish_seq_per_s"]
    con_ratio = med["consume_c4_per_s"] / med["consume_c1_per_s"]
    print(f"  ratio publish conc32/seq   {pub_ratio:8.2f}x")
    print(f"  ratio consume c4/c1        {con_ratio:8.2f}x")


if __name__ == "__main__":
    main()
