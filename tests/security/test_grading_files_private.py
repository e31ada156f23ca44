"""What a grading writes on the lab node, before it is published, is the orchestrator's
alone: a local user of the server must not read it.

Before, a user such as `nobody` could copy, during a grading (or for as long as the bus
was down, or a stopped grading waited for the next start), `completion.json` (the lab's
variables, i.e. its answers, the learner's tokens and, in the evidence pack, their
terminal recording), the live checks' kept outcomes and every check's output: they were
0644 in 0755 directories. The real orchestrator, runtime and lab; the grading is stopped
once its result is stored (as a bus outage leaves it), and read as `nobody`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from forge.evidence.artifact_store import COMPLETION_FILE, EVIDENCE_DIR, GRADED_FILE
from forge.services.orchestrator import grade_lab

from ..orchestrator.conftest import (  # noqa: F401  (fixtures)
    Orch,
    make_orch,
    orch,
    spawn_event,
)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "--", *argv], capture_output=True, timeout=10, check=False)


def test_a_stored_grading_is_unreadable_to_other_local_users(orch: Orch) -> None:  # noqa: F811
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish("forge.spawn.requested", event)
    orch.wait_state(sid, "running")
    secret = str(orch.row(sid).details["variables"]["secret"])
    orch.runtime.exec(sid, "learner", shell=f"echo 'token {secret}' > /workspace/answer.txt")

    grade_lab._grade_and_store(orch.state, sid, "submitted")  # stored, not yet published

    scenario = orch.settings.storage_root / "scenarios" / sid
    completion = scenario / COMPLETION_FILE
    graded = scenario / GRADED_FILE  # kept before the audit entry: the same secrets
    outputs = sorted((scenario / EVIDENCE_DIR).iterdir())
    assert secret in completion.read_text() and secret in graded.read_text() and outputs  # what there is to steal
    assert any(secret.encode() in p.read_bytes() for p in outputs)
    for path in [completion, graded, *outputs]:
        read = _as_nobody("cat", str(path))
        assert read.returncode != 0 and secret.encode() not in read.stdout, path
    listed = _as_nobody("ls", str(scenario / EVIDENCE_DIR))
    assert listed.returncode != 0 and not listed.stdout
    for path in [completion, graded, *outputs, *Path(scenario).glob("*.live.json")]:
        assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
