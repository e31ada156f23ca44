"""Scoring benchmark: artifact build + sign + atomic write, and offline verification.

A lab with 10 checks (5 criteria x 2) and 1 MB of check output in total. Prints the median
(p50) and p90 of: build_artifacts (score, bundle, DSSE signature) + write_results, and of
verify_paths on the written files, and the service-level completion->verdict latency
(real nats-server, the scoreboard's consumer, scoring, finalized event).

    .venv/bin/python bench/scoring.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forge.audit.log import scenario_log
from forge.evidence.artifacts import EvidenceInputs, build_artifacts, write_results
from forge.signing.keystore import SigningKeyring
from forge_verify import verify_paths
from forge_verify.score import CheckResult, CriterionSpec, ScoreInputs, StreamOutput

CHECKS = 10
EVIDENCE_BYTES = 1024 * 1024
TEMPLATE = b"apiVersion: frostgate.forge/v1\nkind: ScenarioTemplate\n" * 20


def _output(rng: random.Random, size: int) -> StreamOutput:
    words = ["GET", "/index.html", "200", "10.10.2.5", "tcp", "open", "8080", "ok", "route"]
    parts: list[str] = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(words) for _ in range(6)) + f" {rng.getrandbits(64):016x}\n"
        parts.append(line)
        n += len(line)
    text = "".join(parts)[:size]
    raw = text.encode()
    return StreamOutput(text, hashlib.sha256(raw).hexdigest(), len(raw), False)


def _inputs(scenario_id: str, rng: random.Random) -> ScoreInputs:
    per_check = EVIDENCE_BYTES // CHECKS
    criteria = tuple(CriterionSpec(f"c{i}", f"criterion {i}", float(i + 1), 2) for i in range(5))
    empty = _output(rng, 0)
    results = tuple(
        CheckResult(f"c{i // 2}", i % 2, i != 7, 0 if i != 7 else 1, _output(rng, per_check),
                    empty, False, 25, "learner", ("sh", "-c", f"check {i}"))
        for i in range(CHECKS))
    return ScoreInputs(
        scenario_id=scenario_id, run_id="bench", track="netplus", template_name="netplus",
        template_sha256=hashlib.sha256(TEMPLATE).hexdigest(), subject="bench",
        tenant_id="bench", plan="PRO", retention_days=30, completion_reason="submitted",
        started_at=datetime(2026, 1, 1, tzinfo=UTC), completed_at=datetime.now(UTC),
        criteria=criteria, results=results)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--service-runs", type=int, default=20,
                        help="completion->verdict runs through NATS and the scoreboard")
    args = parser.parse_args()
    rng = random.Random(1)
    build_ms: list[float] = []
    verify_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key, _ = SigningKeyring(root / "keys").ensure()
        for run in range(args.runs):
            sid = f"scn-{run:016x}"
            log = scenario_log(root, sid)
            for state in ("pending", "launching", "running", "grading", "completed"):
                log.append(f"scenario.{state}", {"run": run})
            inputs = _inputs(sid, rng)
            evidence = EvidenceInputs(TEMPLATE, [{"package": "forge.training", "allow": True}],
                                      log.read_bytes())
            t0 = time.perf_counter()
            written = write_results(root, build_artifacts(inputs, evidence, key))
            t1 = time.perf_counter()
            d = written.directory
            res = verify_paths(d / "score.json", d / "evidence.tar.zst", d / "verdict.sig",
                               d / "verdict.pub")
            t2 = time.perf_counter()
            assert res.ok, res.reasons
            build_ms.append((t1 - t0) * 1000)
            verify_ms.append((t2 - t1) * 1000)
        bundle_size = (d / "evidence.tar.zst").stat().st_size
    print(f"lab: {CHECKS} checks, {EVIDENCE_BYTES // 1024} KiB of check output, "
          f"{args.runs} runs; bundle {bundle_size / 1024:.0f} KiB")
    print(f"build+sign+write  p50 {statistics.median(build_ms):7.1f} ms   "
          f"p90 {_pct(build_ms, 0.9):7.1f} ms")
    print(f"verify            p50 {statistics.median(verify_ms):7.1f} ms   "
          f"p90 {_pct(verify_ms, 0.9):7.1f} ms")
    ratio = statistics.median(verify_ms) / statistics.median(build_ms)
    print(f"ratio verify/build (p50): {ratio:.2f}")
    if args.service_runs > 0:
        service_ms = asyncio.run(completion_to_verdict(args.service_runs))
        print(f"completion->verdict p50 {statistics.median(service_ms):7.1f} ms   "
              f"p90 {_pct(service_ms, 0.9):7.1f} ms  (publish forge.scenario.completed -> "
              "forge.score.finalized received; real nats-server, scoreboard consumer)")
        ratio = statistics.median(service_ms) / statistics.median(build_ms)
        print(f"ratio completion->verdict / build+sign+write (p50): {ratio:.2f}")


# ----------------------------------------------------------- completion -> verdict latency
# The whole scoreboard path: a completion event (10 checks, 1 MB of evidence files, SAT and
# ET minted with the shared keyrings) published on a real nats-server, consumed by the
# scoreboard's durable consumer, verified, scored, written, and announced on
# forge.score.finalized. Latency is publish -> finalized event received.

BENCH_TEMPLATE = """apiVersion: frostgate.forge/v1
kind: ScenarioTemplate
metadata:
  name: bench-lab
  labels: ["class:netplus", "tier:foundation"]
  title: Benchmark lab
  summary: A lab that exists only to measure the scoring path.
  difficulty: beginner
  estimated_minutes: 5
  objectives: ["Measure the scoring path"]
spec:
  description: Benchmark lab.
  limits: {cpu: 0.5, memory_mb: 256, pids: 128, attacker_max_exploits: 0, timeout_minutes: 30}
  network:
    subnets: [{name: lan, cidr: 10.61.1.0/24}]
    egress: deny
  assets:
    containers:
      - name: learner
        access: learner
        networks: [{subnet: lan, address: 10.61.1.10}]
  successCriteria:
"""


def _bench_template() -> str:
    crits = []
    for i in range(5):
        crits.append(f"""    - id: c{i}
      description: criterion {i}
      weight: {i + 1}
      checks:
""" + "".join(f"""        - container: learner
          command: ["/bin/echo", "{i}-{j}"]
          expect: {{exit_code: 0}}
""" for j in range(2)))
    return BENCH_TEMPLATE + "".join(crits)


def _completion(settings: Any, sid: str, template_sha: str, rng: random.Random) -> dict[str, Any]:
    from forge.tokens import ET, SAT, mint_token

    et_jti = uuid.uuid4().hex
    et = mint_token(settings.et, ET, {"jti": et_jti, "sub": "bench", "tenant_id": "bench",
                                      "plan": "PRO", "tracks": ["netplus"],
                                      "retention_days": 30, "source": "store"})
    sat = mint_token(settings.sat, SAT, {"scenario_id": sid, "track": "netplus",
                                         "template_id": "bench-lab", "sub": "bench",
                                         "tenant_id": "bench", "plan": "PRO",
                                         "et_jti": et_jti})
    evidence = settings.storage_root / "scenarios" / sid / "evidence"
    evidence.mkdir(parents=True)
    results, hashes = [], {}
    for i in range(CHECKS):
        cid, index = f"c{i // 2}", i % 2
        full = _output(rng, EVIDENCE_BYTES // CHECKS).text.encode()
        for stream, data in (("stdout", full), ("stderr", b"")):
            (evidence / f"{cid}.{index}.{stream}").write_bytes(data)
            hashes[f"{cid}.{index}.{stream}"] = hashlib.sha256(data).hexdigest()
        results.append({
            "criterion_id": cid, "check_index": index, "passed": i != 7,
            "exit_code": 0 if i != 7 else 1,
            "stdout": {"text": full[:16384].decode(), "sha256": hashlib.sha256(full).hexdigest(),
                       "size": len(full), "truncated": True},
            "stderr": {"text": "", "sha256": hashlib.sha256(b"").hexdigest(), "size": 0,
                       "truncated": False},
            "timed_out": False, "duration_ms": 20, "container": "learner",
            "command": ["/bin/echo", f"{i // 2}-{index}"]})
    log = scenario_log(settings.storage_root, sid)
    for state in ("pending", "launching", "running", "grading", "completed"):
        log.append(f"scenario.{state}", {"bench": True})
    now = datetime.now(UTC)
    return {"scenario_id": sid, "run_id": f"{sid}.1", "track": "netplus",
            "template": {"name": "bench-lab", "sha256": template_sha}, "tenant_id": "bench",
            "subject": "bench", "plan": "PRO", "retention_days": 30,
            "completion_reason": "submitted", "started_at": now.isoformat(),
            "completed_at": now.isoformat(), "sat": sat, "et": et, "variables": {},
            "policy": {"allow": True, "reasons": [], "policy_hash": "0" * 64, "input": {}},
            "results": results, "evidence": hashes}


def _scenario_row(db: Any, sid: str) -> None:
    """The scenario's record, as spawn_service leaves it (the scoreboard reads hint
    reveals and checks from it, and pauses a completion whose record is missing)."""
    from forge.store.models import Scenario

    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id="bench",
                          subject="bench", track="netplus", template_id="bench-lab",
                          plan="PRO", state="completed", created_at=now, updated_at=now,
                          details={}))


async def completion_to_verdict(runs: int) -> list[float]:
    """Publish completions one at a time; return publish->finalized latencies in ms."""
    from nats.aio.client import Client

    from forge.bus import NatsServer, Publisher
    from forge.bus.subjects import SCENARIO_COMPLETED, SCORE_FINALIZED
    from forge.config import load_settings
    from forge.services.common.app import make_context
    from forge.services.scoreboard.leaderboard import ScoreIndex
    from forge.services.scoreboard.scoring import Scorer
    from forge.services.scoreboard.state import ScoreboardState
    from forge.signing.keystore import SigningKeyring as Ring
    from forge.store.migrate import upgrade
    from forge.templates.registry import TemplateRegistry

    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, NatsServer() as server:
        root = Path(tmp)
        (root / "templates").mkdir()
        (root / "templates" / "bench-lab.yaml").write_text(_bench_template())
        settings = load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(root / "storage"),
                                  **server.client_env(),
                                  "FORGE_TEMPLATE_DIR": str(root / "templates")})
        upgrade(settings.db_url)
        registry = TemplateRegistry.load(settings.templates_dir)
        ring = Ring(root / "storage" / "keys" / "signing")
        ring.ensure()
        ctx = make_context("scoreboard", settings)
        state = ScoreboardState(ctx=ctx, scorer=Scorer(settings, registry, ring, db=ctx.db),
                                publisher=Publisher(server.admin_url),
                                index=ScoreIndex(settings.storage_root))
        consumer = state.make_consumer()
        await state.publisher.start(wait=5)
        await consumer.start(wait=5)
        nc = Client()
        await nc.connect(server.admin_url)
        arrived: dict[str, float] = {}
        got = asyncio.Event()

        async def on_final(msg: Any) -> None:
            arrived[json.loads(msg.data)["scenario_id"]] = time.perf_counter()
            got.set()

        await nc.subscribe(SCORE_FINALIZED, cb=on_final)
        sha = registry.get("bench-lab").sha256
        rng = random.Random(2)
        try:
            for run in range(runs):
                sid = f"scn-{0xbe00000000000000 + run:016x}"
                body = _completion(settings, sid, sha, rng)
                _scenario_row(ctx.db, sid)  # the scoreboard pauses a completion without one
                got.clear()
                t0 = time.perf_counter()
                await state.publisher.publish(SCENARIO_COMPLETED, body,
                                              msg_id=f"{sid}-completed")
                while sid not in arrived:
                    await asyncio.wait_for(got.wait(), 30)
                    got.clear()
                latencies.append((arrived[sid] - t0) * 1000)
        finally:
            await nc.close()
            await consumer.stop()
            await state.publisher.close()
            state.ctx.db.dispose()
    return latencies


if __name__ == "__main__":
    main()
