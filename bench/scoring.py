"""Scoring benchmark: artifact build + sign + atomic write, and offline verification.

A lab with 10 checks (5 criteria x 2) and 1 MB of check output in total. Prints the median
(p50) and p90 of: build_artifacts (score, bundle, DSSE signature) + write_results, and of
verify_paths on the written files. The service-level completion->verdict latency (NATS
consumer included) is measured by the scoreboard service benchmark, not here.

    .venv/bin/python bench/scoring.py [--runs 30]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from forge.audit.log import scenario_log
from forge.evidence.artifacts import EvidenceInputs, build_artifacts, write_results
from forge.evidence.score import CheckResult, CriterionSpec, ScoreInputs, StreamOutput
from forge.evidence.verify import verify_paths
from forge.signing.keyring import SigningKeyring

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


if __name__ == "__main__":
    main()
