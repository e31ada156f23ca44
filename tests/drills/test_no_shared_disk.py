"""Services share no disk: a whole journey with a STORAGE_ROOT per service.

spawn_service, the orchestrator (a lab node) and the scoreboard each run as `forge serve`
with its own storage root, and results go to the JetStream Object Store
(`FORGE_ARTIFACT_STORE=jetstream`). The learner's answer is larger than an inline evidence
pack, so the node ships its evidence as an Object Store object. The verdict is signed, the
operator fetches the four files with `forge artifacts fetch` and the runbook's offline
command accepts them. Afterwards each root holds only what its own service wrote: the
scoreboard's root has the scenario's audit log (the node's chain plus its verdict entries)
and no evidence files, the node's root has no results, spawn_service's root has nothing of
the scenario.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import nats as nats_client
import pytest

from forge.bus.evidence_pack import INLINE_PACK_LIMIT
from forge.bus.subjects import SCENARIO_COMPLETED, STREAM
from forge.lifecycle.store import load
from forge.runtime.local import LocalRuntime
from forge.store.db import Database

from .conftest import PYTHON, REPO, Drill, spawn_lab, submit, wait_for, wait_verdict

PADDING = 200 * 1024  # the answer file: well above the inline pack limit


async def _completion(admin_url: str) -> dict[str, Any]:
    nc = await nats_client.connect(admin_url)
    try:
        msg = await nc.jetstream().get_last_msg(STREAM, SCENARIO_COMPLETED)
    finally:
        await nc.close()
    body: dict[str, Any] = json.loads(msg.data or b"{}")
    return body


@pytest.mark.slow
@pytest.mark.root
def test_journey_with_a_storage_root_per_service(drill: Drill, tmp_path: Path) -> None:
    roots = {"spawn": drill.root / "spawn-root", "orchestrator": drill.root / "node-root",
             "scoreboard": drill.root / "scoreboard-root"}
    envs = {name: drill.env(STORAGE_ROOT=str(root), FORGE_ARTIFACT_STORE="jetstream")
            for name, root in roots.items()}
    drill.forge_ok("keys", "generate", env=envs["scoreboard"])
    runtime = LocalRuntime(str(roots["orchestrator"] / "runtime"), drill.prefix)
    try:
        for name, svc in drill.services.items():
            svc.start(envs[name])
        for svc in drill.services.values():
            svc.wait_ready()
        learner = drill.learner("acme", "nadia")
        sid = spawn_lab(drill, learner)
        db = Database(drill.db_url)
        try:
            secret = load(db, sid).details["variables"]["secret"]
        finally:
            db.dispose()
        runtime.exec(sid, "learner", shell=(
            f"{{ echo 'token {secret}'; head -c {PADDING} /dev/zero | tr '\\0' x; }}"
            " > /workspace/answer.txt"))
        submit(drill, learner, sid)
        verdict = wait_verdict(drill, learner, sid, timeout=120)
    finally:
        for info in runtime.list():
            runtime.destroy(info.lab_id)
        runtime.close()
    assert verdict["verification"]["ok"] is True
    assert verdict["score"]["passed"] == verdict["score"]["total"] == 2
    # The leaderboard reads the same store.
    board_resp = httpx.get(f"{drill.url('scoreboard')}/v1/leaderboard", headers=learner,
                           timeout=10)
    assert [e["scenario_id"] for e in board_resp.json()["entries"]] == [sid]

    # The evidence crossed as an Object Store object, not inline and not through disk.
    event = asyncio.run(_completion(drill.nats.admin_url))
    assert event["scenario_id"] == sid and event.get("evidence_pack") is None
    ref = event["evidence_object"]
    assert ref["name"] == f"{sid}.{ref['sha256']}" and ref["size"] > INLINE_PACK_LIMIT
    print(f"\nevidence pack object: {ref['size']} bytes")

    # The operator fetches the results and runs the runbook's command on them, unchanged.
    operator_dir = tmp_path / "operator"
    operator_dir.mkdir()
    fetched = subprocess.run([PYTHON, "-m", "forge", "artifacts", "fetch", sid],
                             env=envs["scoreboard"], cwd=operator_dir, capture_output=True,
                             text=True, timeout=120)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    results = f"storage/scenarios/{sid}/results"
    bundle = next((operator_dir / results).glob("evidence.tar.*")).name
    verified = subprocess.run(
        [PYTHON, str(REPO / "scripts" / "verify_verdict.py"), f"{results}/score.json",
         f"{results}/{bundle}", f"{results}/verdict.sig", f"{results}/verdict.pub"],
        cwd=operator_dir, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and verified.stdout.startswith(f"PASS {sid}"), \
        verified.stdout + verified.stderr
    unknown = subprocess.run([PYTHON, "-m", "forge", "artifacts", "fetch",
                              "scn-" + "0" * 16, "--out", str(tmp_path / "none")],
                             env=envs["scoreboard"], capture_output=True, text=True,
                             timeout=120)
    assert unknown.returncode == 1 and "no results for scn-" in unknown.stderr
    assert not (tmp_path / "none").exists()

    # Each root holds only what its own service wrote.
    board = roots["scoreboard"] / "scenarios" / sid
    node = roots["orchestrator"] / "scenarios" / sid
    # The verdict's audit entry follows its results: wait for it, not only for the results.
    kept = wait_for(lambda: (b'"event":"score.finalized"' in (data := (
        board / "audit.jsonl").read_bytes()) and data), 30, "the verdict's audit entry", 0.1)
    node_log = (node / "audit.jsonl").read_bytes()
    completed = node_log[:node_log.index(b'"event":"scenario.completed"')]
    assert kept.startswith(completed) and b'"event":"score.finalized"' in kept
    assert b'"event":"score.finalized"' not in node_log
    assert {p.name for p in board.iterdir()} <= {"audit.jsonl", "audit.jsonl.head",
                                                 "audit.jsonl.lock"}
    # The node's raw evidence left with the published completion (it travelled in the pack).
    assert not (node / "evidence").exists() and not (node / "results").exists()
    assert not (node / "evidence.pack").exists() and not (node / "completion.json").exists()
    assert not (roots["spawn"] / "scenarios" / sid).exists()
    assert not any(roots["orchestrator"].rglob("verdict.sig"))
    assert not any(roots["scoreboard"].rglob("verdict.sig"))
