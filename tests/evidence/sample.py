"""Fixed scoring inputs for evidence tests and the committed golden artifacts.

Run `python -m tests.evidence.sample` from the repo root to regenerate tests/evidence/golden/
(only when the artifact format changes on purpose; the golden test then shows the diff).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from forge.audit.log import AuditLog
from forge.evidence.artifacts import Artifacts, EvidenceInputs, build_artifacts
from forge.signing.keystore import SigningKey
from forge_verify.audit_chain import scenario_stream
from forge_verify.judging import Expectation
from forge_verify.rules import CheckRule, CriterionRule, criteria_document
from forge_verify.score import CheckResult, CriterionSpec, ScoreInputs, StreamOutput

GOLDEN_DIR = Path(__file__).parent / "golden"
SCENARIO_ID = "scn-00112233aabbccdd"
OTHER_SCENARIO_ID = "scn-99887766ffeeddcc"
SIGNED_AT = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
TEMPLATE = (b"apiVersion: frostgate.forge/v1\nkind: ScenarioTemplate\n"
            b"metadata:\n  name: netplus\n  labels: [\"class:netplus\", \"tier:foundation\"]\n")
POLICY = [{"package": "forge.training", "allow": True, "deny_reasons": [],
           "policy_hash": "ab" * 32}]


# The rendered criteria the sample's checks were judged against (bundled as criteria.json).
RULES = (
    CriterionRule("find-target", "Find the target's address and port", 2.0, (
        CheckRule("learner", ("cat", "/workspace/target.txt"),
                  Expectation(exit_code=0, stdout_contains="10.10.2.5")),
        CheckRule("learner", ("cat", "/workspace/port.txt"),
                  Expectation(stdout_regex=r"^8080$|^8080\n")),
    )),
    CriterionRule("save-page", "Save what the target serves", 1.0, (
        CheckRule("learner", ("cat", "/workspace/page.html"),
                  Expectation(exit_code=0, stdout_contains="token-3f9a")),
    )),
    CriterionRule("report", "Write the report", 1.0, (
        CheckRule("learner", ("test", "-s", "/workspace/report.md"), Expectation(exit_code=0)),
        CheckRule("learner", ("grep", "-q", "risk", "/workspace/report.md"),
                  Expectation(exit_code=0)),
    )),
)
CRITERIA = criteria_document(RULES)


def fixed_key(seed: int = 7) -> SigningKey:
    """A deterministic Ed25519 key (never use such keys outside tests)."""
    return SigningKey.from_private_key(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def stream(text: str) -> StreamOutput:
    """A complete (untruncated) captured output."""
    raw = text.encode()
    return StreamOutput(text, hashlib.sha256(raw).hexdigest(), len(raw), False)


def audit_log(directory: Path, scenario_id: str = SCENARIO_ID, signer: SigningKey | None = None,
              ) -> bytes:
    """A scenario audit chain with fixed timestamps."""
    log = AuditLog(directory / f"{scenario_id}.jsonl", scenario_stream(scenario_id))
    t = datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC)
    log.append("scenario.pending", {"track": "netplus"}, at=t)
    log.append("scenario.launching", {"policy": "allow"}, at=t.replace(minute=1))
    log.append("scenario.running", {}, at=t.replace(minute=2))
    if signer is not None:
        log.checkpoint(signer, at=t.replace(minute=3))
    log.append("scenario.grading", {"reason": "submitted"}, at=t.replace(minute=59))
    log.append("scenario.completed", {"reason": "submitted"}, at=t.replace(minute=59, second=30))
    return log.read_bytes()


def score_inputs(scenario_id: str = SCENARIO_ID) -> ScoreInputs:
    """Three criteria (weights 2, 1, 1), five checks, one failing: score 0.75."""
    return ScoreInputs(
        scenario_id=scenario_id, run_id="run-0001", track="netplus",
        template_name="netplus", template_sha256=hashlib.sha256(TEMPLATE).hexdigest(),
        subject="learner-alice", tenant_id="tenant-acme", plan="PRO", retention_days=30,
        completion_reason="submitted",
        started_at=datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC),
        completed_at=datetime(2026, 3, 1, 11, 59, 30, tzinfo=UTC),
        criteria=(
            CriterionSpec("find-target", "Find the target's address and port", 2.0, 2),
            CriterionSpec("save-page", "Save what the target serves", 1.0, 1),
            CriterionSpec("report", "Write the report", 1.0, 2),
        ),
        results=(
            CheckResult("find-target", 0, True, 0, stream("10.10.2.5\n"), stream(""), False,
                        41, "learner", ("cat", "/workspace/target.txt")),
            CheckResult("find-target", 1, True, 0, stream("8080\n"), stream(""), False, 38,
                        "learner", ("cat", "/workspace/port.txt")),
            CheckResult("save-page", 0, True, 0, stream("token-3f9a\n"), stream(""), False,
                        55, "learner", ("cat", "/workspace/page.html")),
            CheckResult("report", 0, True, 0, stream("ok\n"), stream(""), False, 12,
                        "learner", ("test", "-s", "/workspace/report.md")),
            CheckResult("report", 1, False, 1, stream(""), stream("grep: no match\n"), False,
                        9, "learner", ("grep", "-q", "risk", "/workspace/report.md")),
        ),
    )


def build(directory: Path, *, scenario_id: str = SCENARIO_ID, key: SigningKey | None = None,
          bundle_format: str = "zst", signed_at: datetime = SIGNED_AT) -> Artifacts:
    """The artifacts for the fixed inputs."""
    signer = key or fixed_key()
    inputs = score_inputs(scenario_id)
    evidence = EvidenceInputs(TEMPLATE, POLICY, audit_log(directory, scenario_id, signer),
                              CRITERIA)
    return build_artifacts(inputs, evidence, signer, signed_at=signed_at,
                           bundle_format=bundle_format)


def write_files(artifacts: Artifacts, directory: Path) -> dict[str, Path]:
    """Write each artifact file into `directory`; name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in artifacts.files().items():
        (directory / name).write_bytes(data)
        paths[name] = directory / name
    return paths


def with_results(inputs: ScoreInputs, **changes: object) -> ScoreInputs:
    """Copy of `inputs` with fields replaced."""
    return replace(inputs, **changes)  # type: ignore[arg-type]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        write_files(build(Path(tmp)), GOLDEN_DIR)
    sys.stdout.write(f"golden artifacts written to {GOLDEN_DIR}\n")
