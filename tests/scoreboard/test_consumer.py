"""The completion consumer end to end: verified events become verifiable verdicts once."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forge.audit.log import global_log
from forge.signing.keystore import SigningKeyring
from forge.tokens import SAT, mint_token
from forge_verify.bundle import read_bundle
from tests.support.lti_platform import write_lti_file

from .conftest import (
    PYTHON,
    VERIFY_SCRIPT,
    Board,
    MakeBoard,
    build_completion,
    wait_for,
)

FILES = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")


def _verify(board: Board, scenario_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    d = board.results_dir(scenario_id)
    return subprocess.run([str(PYTHON), str(VERIFY_SCRIPT), *(str(d / f) for f in FILES),
                           *extra], capture_output=True, text=True, timeout=60, check=False)


async def test_completion_becomes_verified_verdict(make_board: MakeBoard) -> None:
    board = await make_board()
    done = build_completion(board.settings, passed=False, big_output=200_000)
    await board.publish_event(done.event)
    results = board.results_dir(done.scenario_id)
    await wait_for(results.is_dir, what="results directory")
    assert sorted(p.name for p in results.iterdir()) == sorted(FILES)

    # Score from the template's weights: saved-page (2) passed, route-present (1) failed.
    doc = json.loads((results / "score.json").read_bytes())
    assert (doc["score"], doc["passed"], doc["total"]) == (0.666667, 1, 2)
    assert (doc["tenant_id"], doc["subject"], doc["plan"]) == ("acme", "alice", "PRO")
    assert [c["id"] for c in doc["criteria"]] == ["saved-page", "route-present"]

    # The offline verifier passes, and proves origin against the scoreboard's keyring.
    proc = _verify(board, done.scenario_id, "--trusted-key", str(board.keyring().directory))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("PASS")

    # The full output came from the evidence file (its hash matched), not the event's prefix.
    members = read_bundle((results / "evidence.tar.zst").read_bytes())
    assert members["checks/saved-page/0/stdout.txt"] == done.full_stdout
    assert len(done.body["results"][0]["stdout"]["text"]) == 64

    # forge.score.finalized was published once.
    assert await board.wait_finalized(1) == 1


async def test_redelivery_is_a_noop_and_conflict_is_refused(make_board: MakeBoard) -> None:
    board = await make_board()
    done = build_completion(board.settings)
    await board.publish_event(done.event)
    results = board.results_dir(done.scenario_id)
    await wait_for(results.is_dir, what="results")
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    consumer = board.state.consumer
    assert consumer is not None
    acked = consumer.status()["acked"]

    # The same completion again (a redelivery that escaped de-duplication): nothing changes.
    await board.publish_event(done.event, msg_id=f"{done.scenario_id}-completed-again")
    await wait_for(lambda: consumer.status()["acked"] > acked, what="second ack")
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before
    assert await board.wait_finalized(1) == 1

    # A different result for the finalized scenario (another completion time and reason) is
    # refused, audited and kept.
    other = done.variant(completion_reason="expired",
                         completed_at=datetime.now(UTC).isoformat())
    await board.publish(other, msg_id=f"{done.scenario_id}-completed-conflict")
    rows = await wait_for(board.failed_events, what="failed event")
    assert "result_conflict" in rows[0].error and rows[0].scenario_id == done.scenario_id
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before
    # The failed-event row is stored before its audit line is appended: wait for the line.
    log = global_log(board.settings.storage_root)
    audit = await wait_for(lambda: ("completion.failed" in (text := log.read_bytes().decode())
                                    and text), what="completion.failed audited")
    assert "result_conflict" in audit


def _forged_sat(board: Board, body: dict[str, Any]) -> dict[str, Any]:
    from forge.config.keyring import HmacKeyring

    ring = HmacKeyring(name="SAT_HMAC_SECRET", current=b"attacker-secret-0123456789-abcdef-xyz")
    forged = dict(body)
    forged["sat"] = mint_token(ring, SAT, {
        "scenario_id": body["scenario_id"], "track": "netplus", "template_id": "lab-netplus",
        "sub": body["subject"], "tenant_id": body["tenant_id"], "plan": "PRO",
        "et_jti": "whatever"})
    return forged


async def test_forged_and_mismatched_events_are_refused(make_board: MakeBoard) -> None:
    board = await make_board()
    cases: dict[str, tuple[dict[str, Any], str]] = {}
    forged = build_completion(board.settings)
    cases[forged.scenario_id] = (_forged_sat(board, forged.body), "sat_token_")
    tenant = build_completion(board.settings)
    cases[tenant.scenario_id] = (tenant.variant(tenant_id="globex"), "claims_mismatch")
    template = build_completion(board.settings)
    cases[template.scenario_id] = (template.variant(template={"name": "lab-netplus",
                                                              "sha256": "0" * 64}),
                                   "template_hash_mismatch")
    checks = build_completion(board.settings)
    cases[checks.scenario_id] = (checks.variant(results=checks.body["results"][:1]),
                                 "check_list_mismatch")
    extra = build_completion(board.settings)
    bad = extra.variant()
    bad["results"].append(dict(bad["results"][1], check_index=1))
    cases[extra.scenario_id] = (bad, "check_list_mismatch")
    moved = build_completion(board.settings)
    elsewhere = moved.variant()
    elsewhere["results"][0]["container"] = "target"
    cases[moved.scenario_id] = (elsewhere, "check_list_mismatch")
    for body, _ in cases.values():
        await board.publish(body)
    rows = await wait_for(lambda: len(board.failed_events()) == len(cases) and
                          board.failed_events(), what="all failed events")
    by_id = {r.scenario_id: r for r in rows}
    for sid, (_, code) in cases.items():
        assert code in by_id[sid].error, (sid, by_id[sid].error)
        assert by_id[sid].status == "failed"
        assert not board.results_dir(sid).exists(), f"{sid} must never be scored"
    async with board.client() as client:
        listed = (await client.get("/v1/admin/failed-events", headers=board.operator)).json()
        assert {e["scenario_id"] for e in listed["events"]} == set(cases)
        assert all("payload" not in e for e in listed["events"])
        assert (await client.get("/v1/admin/failed-events")).status_code == 401


async def test_missing_signing_key_pauses_scoring(make_board: MakeBoard) -> None:
    board = await make_board(with_key=False)
    async with board.client() as client:
        ready = await client.get("/readyz", headers=board.operator)
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["signing_key"]
        assert set(ready.json()["checks"]) == {"config", "store", "storage", "signing_key",
                                               "templates", "nats", "peer_keys"}
        done = build_completion(board.settings)
        await board.publish_event(done.event)
        consumer = board.state.consumer
        assert consumer is not None
        await wait_for(lambda: consumer.status()["retried"] >= 2, what="paused retries")
        assert not board.results_dir(done.scenario_id).exists()
        assert board.failed_events() == []

        key = SigningKeyring(board.keyring().directory).generate()  # `forge keys generate`
        await wait_for(board.results_dir(done.scenario_id).is_dir, what="verdict after key")
        assert (await client.get("/readyz")).status_code == 200
        envelope = json.loads((board.results_dir(done.scenario_id) / "verdict.sig").read_bytes())
        assert envelope["signatures"][0]["keyid"] == key.key_id

        restarted = await client.post("/v1/admin/nats/restart-subscriber",
                                      headers=board.operator)
        assert restarted.status_code == 200 and restarted.json()["connected"] is True
        assert restarted.json()["restarted"] == {"scoreboard-completed": True}
        assert restarted.json()["status"]["restarts"] == 1
        env = {**board.cli_env(), "SCOREBOARD_URL": board.url}
        cli = await asyncio.to_thread(
            subprocess.run, [str(PYTHON), "-m", "forge", "nats", "restart-subscriber",
                             "--service", "scoreboard"],
            env=env, capture_output=True, text=True, timeout=60, check=False)
        assert cli.returncode == 0 and "scoreboard-completed connected" in cli.stdout, cli.stderr
        metrics = (await client.get("/metrics")).text
        assert 'forge_bus_consumer_connected{durable="scoreboard-completed"} 1.0' in metrics


async def test_the_lti_grade_subscriber_is_checked_and_restarted(
        make_board: MakeBoard, tmp_path: Path) -> None:
    """With LTI grade passback configured the scoreboard runs a second durable consumer
    (`scoreboard-lti-grades`): its `nats` readiness check covers it and the runbook's
    "restart NATS subscriber" restarts it too (both left it out)."""
    lti = write_lti_file(tmp_path, "http://127.0.0.1:9", {})
    board = await make_board(env={"FORGE_LTI_FILE": str(lti)})
    async with board.client() as client:
        ready = await client.get("/readyz", headers=board.operator)
        assert ready.status_code == 200, ready.text
        assert "LTI grade subscriber" in ready.json()["checks"]["nats"]["detail"]
        restarted = await client.post("/v1/admin/nats/restart-subscriber",
                                      headers=board.operator)
        assert restarted.status_code == 200, restarted.text
        assert restarted.json()["restarted"] == {"scoreboard-completed": True,
                                                 "scoreboard-lti-grades": True}
        metrics = (await client.get("/metrics")).text
        assert 'forge_bus_consumer_connected{durable="scoreboard-lti-grades"} 1.0' in metrics
