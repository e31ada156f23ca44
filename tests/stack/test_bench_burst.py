"""The benches' burst (bench/scale_out.burst): K learners' spawns are all in flight at once.

httpx's default pool opens at most 100 connections, so a burst of 200 sent the second
hundred only as the first were answered, and bench/warm_pool.py's "200 concurrent
spawns" measured two bursts of 100 (the second hundred waited seconds before their
requests even reached the spawn API).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

from ..live_server import distinct_ports

BENCH = Path(__file__).resolve().parents[2] / "bench"
LEARNERS = 150  # beyond httpx's default of 100 connections
GUARD_S = 60.0  # only ends a run whose requests never all arrive (the count then fails)


class HoldingServer:
    """Answers POST /v1/spawn with 201 only once every expected request has arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.arrived = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.all_here = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.arrived += 1
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                if self.arrived >= self.expected:
                    self.all_here.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.all_here.wait(), GUARD_S)
                body = json.dumps({"scenario_id": f"scn-{self.arrived:016x}"}).encode()
                self.in_flight -= 1
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_every_learner_of_a_burst_is_in_flight_at_once() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from scale_out import burst
    finally:
        sys.path.remove(str(BENCH))

    async def run() -> tuple[HoldingServer, int]:
        server = HoldingServer(LEARNERS)
        port = distinct_ports(1)[0]
        listening = await asyncio.start_server(server.handle, "127.0.0.1", port)
        async with listening:
            keys = [{"x-api-key": f"key-{i}"} for i in range(LEARNERS)]
            _seconds, accepted = await burst(f"http://127.0.0.1:{port}", keys)
        return server, len(accepted)

    server, accepted = asyncio.run(run())
    assert accepted == LEARNERS
    assert server.most_in_flight == LEARNERS
