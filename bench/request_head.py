"""Cost of the request-head cap (forge.services.common.request_head) on every request.

The same trivial ASGI app served by uvicorn with its plain httptools protocol and with
BoundedHeadProtocol, in turn, each in its own process; a keep-alive client sends GETs
with a browser-sized head (~1 KiB of cookies). Prints, per protocol, the median requests/s
and the server's CPU per request over several rounds, and the ratio bounded/plain.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

import psutil
from _http import BenchConnection

from forge.bus.ports import free_port

ROUNDS = 5
CONNECTIONS = 4
PER_CONNECTION = 1_500
HEADERS = {"Cookie": "forge_session=" + "s" * 600 + "; forge_receipt=" + "r" * 300,
           "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) bench", "Accept": "*/*"}
SERVER = """
import sys, uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from forge.services.common.request_head import BoundedHeadProtocol
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
proto = BoundedHeadProtocol if sys.argv[1] == "bounded" else HttpToolsProtocol
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), http=proto, log_level="warning",
            lifespan="off")
"""


async def _load(port: int) -> None:
    async def one() -> None:
        conn = BenchConnection("127.0.0.1", port)
        for _ in range(PER_CONNECTION):
            status, _ = await conn.request("GET", "/healthz", HEADERS)
            assert status == 200
        conn.close()
    await asyncio.gather(*(one() for _ in range(CONNECTIONS)))


def _serve(kind: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, kind, str(port)])
    for _ in range(300):
        try:
            asyncio.run(BenchConnection("127.0.0.1", port).request("GET", "/"))
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("bench server did not start")


def main() -> None:
    results: dict[str, tuple[list[float], list[float]]] = {"plain": ([], []),
                                                           "bounded": ([], [])}
    servers = {kind: _serve(kind) for kind in results}
    try:
        total = CONNECTIONS * PER_CONNECTION
        for _ in range(ROUNDS):
            for kind, (proc, port) in servers.items():
                server = psutil.Process(proc.pid)
                cpu0, t0 = sum(server.cpu_times()[:2]), time.perf_counter()
                asyncio.run(_load(port))
                wall, cpu = time.perf_counter() - t0, sum(server.cpu_times()[:2]) - cpu0
                results[kind][0].append(total / wall)
                results[kind][1].append(cpu / total * 1e6)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)
    for kind, (rates, cpus) in results.items():
        print(f"{kind:8}: {statistics.median(rates):>8,.0f} requests/s, "
              f"{statistics.median(cpus):6.1f} µs server CPU per request "
              f"(median of {ROUNDS} x {CONNECTIONS * PER_CONNECTION})")
    ratio = statistics.median(results["bounded"][1]) / statistics.median(results["plain"][1])
    print(f"server CPU per request, bounded/plain: {ratio:.3f}")


if __name__ == "__main__":
    main()
