"""A storage root with room for the readiness probe but not for a verdict: /readyz says so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
