"""The benches' burst (bench/scale_out.burst): K learners' spawns are all in flight at once.

httpx's default pool opens at most 100 connections, so a burst of 200 sent the second
hundred only as the first were answered, and bench/warm_pool.py's "200 concurrent
spawns" measured two bursts of 100 (the second hundred waited seconds before their
requests even reached the spawn API).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.server
import json
import sys
import threading
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


class StatusServer(http.server.BaseHTTPRequestHandler):
    """GET /v1/scenarios/<id>: "launching" until the fake clock reaches RUNNING_AT."""

    polls: collections.Counter[str] = collections.Counter()
    clock = [0.0]

    def do_GET(self) -> None:
        sid = self.path.rsplit("/", 1)[-1]
        type(self).polls[sid] += 1
        state = "running" if self.clock[0] >= RUNNING_AT else "launching"
        body = json.dumps({"scenario_id": sid, "state": state}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


RUNNING_AT = 6.0  # fake seconds until every lab runs


def test_burst_learners_are_polled_as_their_lab_page_polls() -> None:
    """bench/warm_pool.py waits for 200 labs by asking each one's status as its lab page
    does (every 1.5 s, lab.js), not in a loop that asked each every ~0.1 s: those polls
    were CPU the burst's labs waited for. A fake clock: no wall time is measured."""
    sys.path.insert(0, str(BENCH))
    try:
        from scale_out import wait_running
    finally:
        sys.path.remove(str(BENCH))
    clock = StatusServer.clock

    def sleep(seconds: float) -> None:
        clock[0] += max(seconds, 0.001)

    port = distinct_ports(1)[0]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), StatusServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        scenarios = [(f"scn-{i:016x}", {"x-api-key": f"key-{i}"}) for i in range(5)]
        running = wait_running(f"http://127.0.0.1:{port}", scenarios, 1.5,
                               clock=lambda: clock[0], sleep=sleep)
    finally:
        server.shutdown()
        server.server_close()
    assert running == 5
    # The burst's wait is the lab page's (read as text: warm_pool imports bench/runtime.py
    # under a name the tests' own modules would clash with).
    page = (BENCH.parent / "src/forge/services/spawn/web/static/js/lab.js").read_text()
    burst_wait = (BENCH / "warm_pool.py").read_text()
    assert "window.setTimeout(poll, 1500)" in page
    assert "BROWSER_POLL_S = 1.5" in burst_wait
    assert "wait_running(url, scenarios, every_s=BROWSER_POLL_S)" in burst_wait
    # Asked at 0, 1.5, 3, 4.5 and 6 (fake) seconds: five times each, not sixty.
    assert StatusServer.polls == dict.fromkeys((sid for sid, _h in scenarios), 5)
