"""Policy decision throughput and latency: embedded regopy engine vs HTTP to opa_server.

    .venv/bin/python bench/policy.py [--seconds 2] [--runs 3]

Prints, for the training gate with a realistic template input: decisions/s and p50/p99
latency for the embedded engine in each thread-safety mode (pool, lock, per-call), with 1
and 4 threads, and for RemoteEngine over loopback HTTP against forge.policy.opa_server.
Figures are medians over several runs.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge.content import content_path
from forge.policy import EmbeddedEngine, PolicyBundle, RemoteEngine, build_training_input
from forge.policy.opa_server import OpaServer
from forge.templates import load_template_file

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "forge.training"


def _input() -> dict[str, Any]:
    t = load_template_file(ROOT / "tests" / "templates" / "fixtures" / "good.yaml").template
    return build_training_input(t, plan_name="FREE", plan_tracks=["netplus"],
                                requested_track="netplus")


Factory = Callable[[], Callable[[], Any]]


def _drive(factory: Factory, threads: int, seconds: float) -> tuple[float, float, float]:
    """Each of `threads` threads gets a decide function from `factory` and calls it for
    `seconds`; returns (decisions/s, p50 ms, p99 ms)."""
    lat: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def work() -> None:
        decide = factory()
        mine: list[float] = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            decide()
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    start = time.perf_counter()
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - start
    lat.sort()
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    return len(lat) / elapsed, p50, p99


def _summary(results: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return (statistics.median(r[0] for r in results),
            statistics.median(r[1] for r in results),
            statistics.median(r[2] for r in results))


def main() -> None:
    """Run every configuration, interleaved run by run (so a burst of load on the shared
    machine hits all of them alike), and print medians plus the key ratios."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    doc = _input()
    bundle = PolicyBundle.load(content_path("policies"))

    configs: list[tuple[str, int, Factory, float]] = []
    for mode in ("pool", "lock", "per_call"):
        eng = EmbeddedEngine(bundle, mode=mode)  # type: ignore[arg-type]
        assert eng.decide(PACKAGE, doc).allow

        def factory(e: EmbeddedEngine = eng) -> Callable[[], Any]:
            return lambda: e.decide(PACKAGE, doc)

        secs = args.seconds if mode != "per_call" else min(args.seconds, 1.0)
        for threads in (1, 4):
            configs.append((f"embedded/{mode}", threads, factory, secs))

    server = OpaServer(EmbeddedEngine(bundle), "127.0.0.1", 0)
    thread = server.start_background()
    clients: list[RemoteEngine] = []

    def http_factory() -> Callable[[], Any]:
        remote = RemoteEngine(server.url, policy_hash=bundle.hash)
        clients.append(remote)
        return lambda: remote.decide(PACKAGE, doc)

    for threads in (1, 4):
        configs.append(("http/opa_server", threads, http_factory, args.seconds))
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    try:
        assert http_factory()().allow
        for _name, threads, fac, _secs in configs:  # warm-up: compile per-thread state
            _drive(fac, threads, 0.2)
        for _ in range(args.runs):
            for name, threads, fac, secs in configs:
                results.setdefault((name, threads), []).append(_drive(fac, threads, secs))
    finally:
        for c in clients:
            c.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    rows = [(name, threads, *_summary(results[(name, threads)]))
            for name, threads, _, _ in configs]

    print(f"policy decisions, package {PACKAGE}, median of {args.runs} run(s) "
          f"x {args.seconds:.1f}s")
    print(f"{'engine':<20}{'threads':>8}{'decisions/s':>14}{'p50 ms':>10}{'p99 ms':>10}")
    for name, threads, rate, p50, p99 in rows:
        print(f"{name:<20}{threads:>8}{rate:>14.0f}{p50:>10.2f}{p99:>10.2f}")
    by = {(r[0], r[1]): r[2] for r in rows}
    print(f"pool/lock (4 threads): {by[('embedded/pool', 4)] / by[('embedded/lock', 4)]:.2f}x")
    print(f"pool/per_call (1 thread): "
          f"{by[('embedded/pool', 1)] / by[('embedded/per_call', 1)]:.1f}x")
    print(f"embedded/http (1 thread): "
          f"{by[('embedded/pool', 1)] / by[('http/opa_server', 1)]:.2f}x")


if __name__ == "__main__":
    main()
