"""Runbook, "Failure recovery checklist — scoreboard": signing key readiness, storage access,
reprocessing failed completion events; what the operator sees, and the fix."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from ..conftest import ENGINES
from .conftest import (
    Drill,
    fresh_secrets,
    spawn_lab,
    submit,
    verify_verdict,
    wait_for,
    wait_state,
    wait_verdict,
)


def no_verdict_yet(drill: Drill, learner: dict[str, str], scenario_id: str) -> None:
    resp = httpx.get(f"{drill.url('scoreboard')}/v1/scores/{scenario_id}", headers=learner,
                     timeout=10)
    assert resp.status_code == 404, resp.text
    assert not drill.results(scenario_id).exists()


@pytest.mark.slow
@pytest.mark.root
def test_signing_key_missing_then_restored(drill: Drill) -> None:
    # No `forge keys generate` yet: outside dev the scoreboard never makes a key itself.
    drill.start(("spawn", "orchestrator", "scoreboard"), wait=False)
    for name in ("spawn", "orchestrator"):
        drill.services[name].wait_ready()
    board = drill.services["scoreboard"]
    body = board.wait_failed_check("signing_key", 60)
    assert list(body["failed"]) == ["signing_key"]
    detail = body["checks"]["signing_key"]["detail"]
    assert "scoring is paused, completions stay queued" in detail
    assert "readiness check signing_key failed" in board.log()

    learner = drill.learner("acme", "kate")
    sid = spawn_lab(drill, learner)
    submit(drill, learner, sid)
    wait_state(drill, learner, sid, "completed", timeout=60)
    wait_for(lambda: "scoring paused" in board.log(), 30, "the scoreboard's pause log line")
    no_verdict_yet(drill, learner, sid)

    # The fix: the operator creates the key; the queued completion is scored, once.
    out = drill.forge_ok("keys", "generate")
    assert "generated signing key" in out
    board.wait_ready(30)
    wait_verdict(drill, learner, sid, timeout=60)
    assert verify_verdict(drill, sid).returncode == 0
    assert "readiness check signing_key recovered" in board.log()


@pytest.mark.slow
@pytest.mark.root
def test_storage_not_writable_then_recovers(drill: Drill) -> None:
    drill.forge_ok("keys", "generate")
    storage = drill.storage
    storage.mkdir(parents=True, exist_ok=True)
    # The scoreboard sees the storage root through its own mount (as a volume would be), so
    # the operator's disk can go read-only under it alone.
    board = drill.services["scoreboard"]
    board.wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     'mount --bind "$0" "$0" && exec "$@"', str(storage)]
    drill.start()
    assert board.proc is not None
    learner = drill.learner("acme", "sam")
    sid = spawn_lab(drill, learner)

    def remount(mode: str) -> None:
        assert board.proc is not None
        subprocess.run(["nsenter", "-t", str(board.proc.pid), "-m", "mount", "-o",
                        f"remount,bind,{mode}", str(storage)], check=True, timeout=30)

    remount("ro")
    body = board.wait_failed_check("storage")
    assert "is not writable" in body["checks"]["storage"]["detail"]
    assert "readiness check storage failed" in board.log()
    submit(drill, learner, sid)
    wait_state(drill, learner, sid, "completed", timeout=60)
    wait_for(lambda: "scoring paused" in board.log(), 30, "the scoreboard's pause log line")
    time.sleep(1)
    no_verdict_yet(drill, learner, sid)  # no partial artifacts either

    # The fix: storage writable again; the paused completion is scored.
    remount("rw")
    board.wait_ready(30)
    wait_verdict(drill, learner, sid, timeout=60)
    files = sorted(p.name for p in drill.results(sid).iterdir())
    assert files == sorted(["score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub"])
    assert verify_verdict(drill, sid).returncode == 0


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("drill", ENGINES, indirect=True)
def test_failed_completion_reprocessed_once(drill: Drill) -> None:
    drill.forge_ok("keys", "generate")
    # A bad deploy: the scoreboard got another SAT_HMAC_SECRET than spawn_service.
    wrong = {**drill.secrets, "SAT_HMAC_SECRET": fresh_secrets()["SAT_HMAC_SECRET"]}
    drill.start(("spawn", "orchestrator"))
    drill.services["scoreboard"].start(drill.env(wrong))
    board = drill.services["scoreboard"]
    # Its /readyz says so (runbook step 5 catches the bad roll-out), naming the secret: it
    # does not accept the orchestrator's current SAT key. It still takes completions in.
    body = board.wait_failed_check("peer_keys", 60)
    detail = body["checks"]["peer_keys"]["detail"]
    assert "SAT_HMAC_SECRET" in detail and "ET_HMAC_SECRET" not in detail
    assert board.readyz()[1]["failed"] == ["peer_keys"]
    learner = drill.learner("acme", "rex")
    sid = spawn_lab(drill, learner)
    submit(drill, learner, sid)

    operator = drill.operator()
    def failed() -> list[dict[str, object]]:
        resp = httpx.get(f"{board.url}/v1/admin/failed-events", headers=operator, timeout=10)
        assert resp.status_code == 200, resp.text
        events: list[dict[str, object]] = resp.json()["events"]
        return [e for e in events if e.get("scenario_id") == sid and e["status"] == "failed"]
    events = wait_for(failed, 60, "the completion to be kept as a failed event")
    assert "SAT" in str(events[0]["error"])
    refused = [line for line in board.log().splitlines()
               if "completion " in line and " refused: " in line]
    assert refused and "SAT" in refused[0]
    assert not any(v in board.log() for v in (*drill.secrets.values(), *wrong.values()))
    no_verdict_yet(drill, learner, sid)
    listed = drill.forge_ok("completions", "list")
    assert sid in listed

    # The fix: the right secret, /readyz, then reprocess (CLI); a second run is a no-op.
    board.restart(drill.env())  # waits for /readyz 200: peer_keys agrees now
    out = drill.forge_ok("completions", "reprocess", "--all", "--json")
    results = json.loads(out)["results"]
    assert [(r["scenario_id"], r["status"]) for r in results] == [(sid, "reprocessed")]
    again = drill.forge_ok("completions", "reprocess", "--all")
    assert "no failed completion events" in again
    by_api = httpx.post(f"{board.url}/v1/admin/failed-events/reprocess",
                        json={"id": events[0]["id"]}, headers=operator, timeout=30)
    assert by_api.json()["results"][0]["status"] == "already_reprocessed", by_api.text
    sig = (drill.results(sid) / "verdict.sig").read_bytes()
    wait_verdict(drill, learner, sid)
    assert (drill.results(sid) / "verdict.sig").read_bytes() == sig  # one verdict
    assert verify_verdict(drill, sid).returncode == 0
