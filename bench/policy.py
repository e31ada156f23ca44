"""Policy decision CPU, throughput and latency: embedded regopy engine vs HTTP to opa_server.

    .venv/bin/python bench/policy.py [--seconds 2] [--runs 3] [--decisions 400]

First, CPU per decision (time.process_time over many decisions, median of the runs) of
the two queries a spawn makes: `forge.gates.admit` (spawn_service: the spawn gate with an
assignment, uncached as spawn_service runs it) and `forge.gates.launch` (the orchestrator:
training + capabilities, uncached and from its decision cache); both again for a denied
spawn (a track outside the plan: the gates word their reasons only for a deny, so a deny
costs more); the same gates as three separate package queries; and the engine's fixed
cost (a trivial policy, with the same input and with an empty one). Records figures
`policy_cpu_ms` (the launch + admit pair, uncached: the first spawn of a template and plan),
`policy_decision_ms` (the costlier of the two decisions) and `policy_class_ms` (admit
uncached + launch through the orchestrator's decision cache with a freshly built training
input: every later spawn of a class on one template, whose launch input is the same).
Then, for the training gate with a
realistic template input: decisions/s and p50/p99 latency for the embedded engine in each
thread-safety mode (pool, lock, per-call), with 1 and 4 threads, and for RemoteEngine over
loopback HTTP against forge.policy.opa_server. Figures are medians over several runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import record

from forge.content import content_path
from forge.policy import (
    CachedEngine,
    DecisionCache,
    EmbeddedEngine,
    PolicyBundle,
    RemoteEngine,
    build_spawn_input,
    build_training_input,
)
from forge.policy.opa_server import OpaServer
from forge.templates import load_template_file

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "forge.training"


def _input() -> dict[str, Any]:
    t = load_template_file(ROOT / "tests" / "templates" / "fixtures" / "good.yaml").template
    return build_training_input(t, plan_name="FREE", plan_tracks=["netplus"],
                                requested_track="netplus")


def _gates_input(i: int) -> dict[str, Any]:
    """One document for every gate: a netplus lab on FREE, learner i's spawn request and
    an open assignment (each i a distinct input, so nothing repeats)."""
    training = build_training_input(
        load_template_file(ROOT / "tests" / "templates" / "fixtures" / "good.yaml").template,
        plan_name="FREE", plan_tracks=["netplus"], requested_track="netplus")
    spawn = build_spawn_input(
        request_id=f"req-{i:08d}", track="netplus", subject=f"learner-{i}", tenant="acme",
        plan_name="FREE", plan_tracks=["netplus"], concurrent_limit=1, concurrent_used=0,
        rate_limit_per_minute=5, rate_used=0)
    doc = {**training, **spawn, "request": {**training["request"], **spawn["request"]}}
    doc["assignment"] = {"id": "asg-1", "now_s": 1500, "opens_at": "2026-12-01T09:00:00Z",
                         "opens_at_s": 1000, "closes_at": "2026-12-01T10:00:00Z",
                         "closes_at_s": 2000, "attempts": {"allowed": 2, "used": 0},
                         "hints_allowed": True}
    return doc


def _denied(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with a plan that lacks the requested track: both gates deny, with reasons."""
    return {**doc, "plan": {"name": "FREE", "tracks": ["ccna"]}}


def _cpu_ms(fn: Callable[[dict[str, Any]], Any], docs: list[dict[str, Any]]) -> float:
    """CPU ms per call of `fn` over `docs` (process time; one thread)."""
    for doc in docs[:20]:
        fn(doc)  # warm-up: compile the query
    t0 = time.process_time()
    for doc in docs:
        fn(doc)
    return (time.process_time() - t0) * 1000 / len(docs)


def cpu_per_decision(bundle: PolicyBundle, runs: int, decisions: int) -> dict[str, float]:
    """Median CPU ms per decision of each way of asking, over `runs` runs."""
    docs = [_gates_input(i) for i in range(decisions)]
    template = load_template_file(ROOT / "tests" / "templates" / "fixtures" / "good.yaml").template
    engine = EmbeddedEngine(bundle)
    cached = CachedEngine(engine, DecisionCache())
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "trivial.rego").write_text(
            "package forge.trivial\n\nimport rego.v1\n\nallow := true\n\ndeny_reasons := set()\n")
        trivial = EmbeddedEngine(Path(tmp))
    for entry in ("launch", "admit"):
        first = engine.decide_gates(entry, docs[0])
        assert first.allow, first.combined.reasons
        assert not engine.decide_gates(entry, _denied(docs[0])).allow
    ways: dict[str, Callable[[dict[str, Any]], Any]] = {
        "launch_uncached": lambda d: engine.decide_gates("launch", d),
        "launch_cached": lambda d: cached.decide_gates("launch", docs[0]),
        "launch_class": lambda d: cached.decide_gates("launch", build_training_input(
            template, plan_name="FREE", plan_tracks=["netplus"], requested_track="netplus",
            template_sha256="0" * 64)),
        "admit_uncached": lambda d: engine.decide_gates("admit", d),
        "launch_denied": lambda d: engine.decide_gates("launch", _denied(d)),
        "admit_denied": lambda d: engine.decide_gates("admit", _denied(d)),
        "three_queries": lambda d: [engine.decide(p, d) for p in
                                    ("forge.training", "forge.capabilities", "forge.spawn")],
        "trivial_same_input": lambda d: trivial.decide("forge.trivial", d),
        "trivial_empty_input": lambda d: trivial.decide("forge.trivial", {}),
    }
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(runs):
        for name, fn in ways.items():
            samples[name].append(_cpu_ms(fn, docs))
    return {name: statistics.median(v) for name, v in samples.items()}


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
        while True:  # at least one call, even when the machine is slow to start threads
            t0 = time.perf_counter()
            decide()
            mine.append(time.perf_counter() - t0)
            if time.perf_counter() >= stop:
                break
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
    ap.add_argument("--decisions", type=int, default=400)
    args = ap.parse_args()
    doc = _input()
    bundle = PolicyBundle.load(content_path("policies"))

    cpu = cpu_per_decision(bundle, args.runs, args.decisions)
    print(f"policy CPU per decision, median of {args.runs} run(s) x {args.decisions}")
    for name, ms in cpu.items():
        print(f"{name:<22}{ms:>10.3f} ms")
    fixed = cpu["trivial_same_input"]
    pair = cpu["launch_uncached"] + cpu["admit_uncached"]
    print(f"launch + admit (one spawn): {pair:.3f} ms; three separate queries "
          f"{cpu['three_queries']:.3f} ms; engine's fixed cost with this input {fixed:.3f} ms")
    record("policy_cpu_ms", round(pair, 3), cpu_ms_per_op=round(pair, 3),
           detail=(f"one spawn's two queries, uncached: forge.gates.launch (orchestrator, "
                   f"training+capabilities) {cpu['launch_uncached']:.3f} ms + "
                   f"forge.gates.admit (spawn_service, spawn gate with assignment) "
                   f"{cpu['admit_uncached']:.3f} ms; launch from the orchestrator's "
                   f"decision cache {cpu['launch_cached']:.3f} ms; a denied spawn "
                   f"{cpu['launch_denied'] + cpu['admit_denied']:.3f} ms; three separate queries "
                   f"{cpu['three_queries']:.3f} ms; engine fixed cost {fixed:.3f} ms "
                   f"(trivial policy, same input), {cpu['trivial_empty_input']:.3f} ms "
                   "(empty input)"))
    worst = max(cpu["launch_uncached"], cpu["admit_uncached"])
    record("policy_decision_ms", round(worst, 3), cpu_ms_per_op=round(worst, 3),
           detail=(f"the costlier of a spawn's two decisions, uncached: launch "
                   f"{cpu['launch_uncached']:.3f} ms, admit {cpu['admit_uncached']:.3f} ms"))
    # The launch gate reads only the template, the requested track and the plan
    # (forge.policy.projection), the same for every learner of a class on one template: the
    # orchestrator's decision cache answers it after the class's first spawn. The admit
    # gate reads the learner and the request id, so it is evaluated for every spawn.
    in_class = cpu["admit_uncached"] + cpu["launch_class"]
    record("policy_class_ms", round(in_class, 3), cpu_ms_per_op=round(in_class, 3),
           detail=(f"a class on one template: admit {cpu['admit_uncached']:.3f} ms uncached "
                   f"+ launch {cpu['launch_class']:.3f} ms through the orchestrator's "
                   "decision cache, with each learner's own training input (built afresh per "
                   "spawn, as the orchestrator does; the first spawn of a template and plan "
                   "costs the uncached pair)"))

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
