"""A storage root with room for the readiness probe but not for a verdict: /readyz says so."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import pytest

from forge.audit.log import scenario_log_path
from forge.bus.contracts import ScenarioCompletedV1, parse
from forge.bus.evidence_pack import EvidencePack, encode_pack
from forge.config import load_settings
from tests.services.conftest import prod_environ
from tests.support.small_disk import fill_disk, small_tmpfs

from ..conftest import SQLITE_ONLY
from .conftest import MakeBoard, build_completion, wait_for

PAGE = 4096


@pytest.mark.root
@pytest.mark.parametrize("db_url", [SQLITE_ONLY], indirect=True)
async def test_scoring_paused_for_room_fails_the_storage_check_until_scored(
        make_board: MakeBoard, tmp_path: Path) -> None:
    # The storage root filled up but for a few pages: the check's 2-byte probe file still
    # fitted, so /readyz answered 200 (and `forge up` showed the scoreboard ready) while
    # every completion was paused ("cannot write results … No space left on device") and
    # no learner got a verdict.
    with small_tmpfs(tmp_path / "storage", "4m"):
        board = await make_board()
        done = build_completion(board.settings)
        filler = fill_disk(board.settings.storage_root)
        last = filler.files[-1]
        os.truncate(last, max(0, last.stat().st_size - 2 * PAGE))  # room for the probe only
        async with board.client() as client:
            assert (await client.get("/readyz")).status_code == 200
            await board.publish_event(done.event)
            consumer = board.state.consumer
            assert consumer is not None
            await wait_for(lambda: consumer.status()["retried"] >= 2, what="paused retries")
            ready = await client.get("/readyz", headers=board.operator)
            assert ready.status_code == 503, ready.text
            assert ready.json()["failed"] == ["storage"]
            detail = ready.json()["checks"]["storage"]["detail"]
            assert "1 completion(s) wait for room on the storage root" in detail
            assert f"cannot write results of {done.scenario_id}" in detail
            assert "free space there" in detail
            assert not (board.results_dir(done.scenario_id) / "score.json").exists()

            filler.remove()
            await wait_for((board.results_dir(done.scenario_id) / "verdict.sig").is_file,
                           what="the verdict once there is room")
            await wait_for(lambda: not board.state.scorer.out_of_room, what="pause cleared")
            assert (await client.get("/readyz")).status_code == 200
            assert await board.wait_finalized(1) == 1


@pytest.mark.root
@pytest.mark.parametrize("db_url", [SQLITE_ONLY], indirect=True)
async def test_a_completion_another_replica_scored_no_longer_fails_the_storage_check(
        make_board: MakeBoard, tmp_path: Path, db_url: str) -> None:
    # Two scoreboard replicas, each with its own storage root (scale-out.md). Replica A's
    # disk filled up: its attempt stopped for room, and the redelivery went to replica B,
    # which scored it. Once A had room again its /readyz still said "1 completion(s) wait
    # for room … they are scored by themselves" for good: that completion never came back
    # to A, and only A's own next attempt at it cleared the note.
    with small_tmpfs(tmp_path / "storage-a", "4m") as root_a:
        board_a = await make_board(env={"STORAGE_ROOT": str(root_a)})
        # as a lab node ships it: its audit log and outputs in the event (an inline pack)
        node = load_settings(prod_environ(tmp_path / "node", FORGE_DB_URL=db_url))
        done = build_completion(node, record_in=board_a.settings)
        sid = done.scenario_id
        evidence = node.storage_root / "scenarios" / sid / "evidence"
        pack = EvidencePack(sid, scenario_log_path(node.storage_root, sid).read_bytes(),
                            {p.name: p.read_bytes() for p in evidence.iterdir()})
        event = parse(ScenarioCompletedV1, done.variant(
            evidence_pack=base64.b64encode(encode_pack(pack)).decode()))
        filler = fill_disk(root_a)
        last = filler.files[-1]
        os.truncate(last, max(0, last.stat().st_size - 2 * PAGE))  # room for the probe only
        async with board_a.client() as client:
            await board_a.publish_event(event)
            await wait_for(lambda: done.scenario_id in board_a.state.scorer.out_of_room,
                           what="replica A paused for room")
            assert (await client.get("/readyz")).status_code == 503
            board_b = await make_board(env={"STORAGE_ROOT": str(tmp_path / "storage-b")})
            await wait_for((board_b.results_dir(done.scenario_id) / "verdict.sig").is_file,
                           what="replica B's verdict")
            filler.remove()
            await wait_for(lambda: httpx.get(board_a.url + "/readyz").status_code == 200,
                           what="replica A ready once it has room")
