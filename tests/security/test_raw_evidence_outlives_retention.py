"""A learner's raw evidence must not outlive the scenario's retention.

Before: every pack over 64 KiB was also written to `scenarios/<id>/evidence.pack` on the lab
node and kept there; retention's RAW_EVIDENCE did not name it (so on one machine it
survived the expired results), and with a storage root per service retention never reached
the node's `evidence/`, `completion.json` or `evidence.pack` at all.
After: the node discards its raw evidence once the completion is on the bus (scoring,
reprocessing and retention read the event and the Object Store), and retention removes
the pack file with the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats as nats_client

from forge.bus.evidence_pack import MAX_PACK_BYTES, decode_pack
from forge.bus.object_buckets import get_object
from forge.bus.permissions import EVIDENCE_BUCKET
from forge.retention.cleanup import cleanup

from ..orchestrator.conftest import (  # noqa: F401  (fixture)
    OPERATOR,
    MakeOrch,
    collect,
    make_orch,
    spawn_event,
)


async def _object(admin_url: str, name: str) -> bytes:
    nc = await nats_client.connect(admin_url)
    try:
        return await get_object(nc.jetstream(), EVIDENCE_BUCKET, name, max_bytes=MAX_PACK_BYTES)
    finally:
        await nc.close()


def test_node_keeps_no_raw_evidence_once_the_completion_is_published(
        make_orch: MakeOrch) -> None:  # noqa: F811
    orch = make_orch()
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish("forge.spawn.requested", event)
    orch.wait_state(sid, "running")
    # A learner answer big enough that the pack travels through the Object Store.
    orch.runtime.exec(sid, "learner", shell="head -c 300000 /dev/urandom | base64 "
                                            "> /workspace/answer.txt")
    with orch.client() as client:
        resp = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    assert resp.status_code == 200 and resp.json()["state"] == "completed"
    done = asyncio.run(collect(orch.nats.admin_url, "forge.scenario.completed", 1))[0]
    ref = done["evidence_object"]
    assert ref is not None
    node_dir = orch.settings.storage_root / "scenarios" / sid
    for raw in ("evidence.pack", "evidence", "completion.json"):
        assert not (node_dir / raw).exists(), f"{raw} kept on the node after publishing"
    # What the scoreboard (and a reprocess) needs is on the bus, intact.
    data = asyncio.run(_object(orch.nats.admin_url, ref["name"]))
    assert hashlib.sha256(data).hexdigest() == ref["sha256"]
    assert set(decode_pack(data, sid).outputs) == set(done["evidence"])
    # The scenario's audit log stays on the node (it is not raw evidence).
    assert (node_dir / "audit.jsonl").exists()


def test_retention_deletes_a_left_over_pack_file_with_the_results(tmp_path: Path) -> None:
    sid = "scn-" + "a" * 16
    scenario = tmp_path / "scenarios" / sid
    (scenario / "results").mkdir(parents=True)
    (scenario / "evidence").mkdir()
    (scenario / "evidence" / "check.0.stdout").write_bytes(b"learner output")
    (scenario / "completion.json").write_text("{}")
    (scenario / "evidence.pack").write_bytes(b"learner output, packed")
    completed = datetime.now(UTC) - timedelta(days=40)
    (scenario / "results" / "score.json").write_text(json.dumps(
        {"completed_at": completed.strftime("%Y-%m-%dT%H:%M:%SZ"), "retention_days": 30}))
    report = cleanup(tmp_path)
    assert [(i.scenario_id, i.action) for i in report.items] == [(sid, "deleted")]
    assert sorted(p.name for p in scenario.iterdir()) == []
