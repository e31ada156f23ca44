"""The instructor dashboard's score summaries (POST /v1/admin/scores/summaries) read each
listed lab's score.json the way the leaderboard does: a result whose score is not a finite
number (NaN or infinity, which JSON answers cannot carry) is left out, and the rest of the
batch still answers. Before, one such file made the whole batch a 500, and so every
dashboard of that cohort a 502. Real scoreboard app, results on the filesystem store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import load_settings
from forge.evidence.artifacts import results_dir
from forge.services.scoreboard.app import build_app

from ..services.conftest import SECRETS, prod_environ


def _score(storage: Path, sid: str, score: str, passed: str = "1") -> None:
    doc = (f'{{"scenario_id": "{sid}", "tenant_id": "acme", "subject": "lea", '
           f'"track": "netplus", "score": {score}, "passed": {passed}, "total": 2, '
           '"completed_at": "2026-12-01T09:00:00Z", "criteria": ['
           '{"id": "route-present", "passed": false}, {"id": "saved-page", "passed": true}]}')
    where = results_dir(storage, sid)
    where.mkdir(parents=True)
    (where / "score.json").write_text(doc)


@pytest.mark.usefixtures("sqlite_only_store")  # reads result files only, never the store
def test_a_score_that_is_not_a_number_leaves_the_batch_answering(tmp_path: Path,
                                                                 nats: NatsServer) -> None:
    storage = tmp_path / "storage"
    settings = load_settings(prod_environ(storage, **nats.client_env()))
    good, nan, inf, huge, big_passed = (f"scn-{n}" + "0" * 15 for n in "12345")
    _score(storage, good, "0.5")
    _score(storage, nan, "NaN")
    _score(storage, inf, "-Infinity")
    _score(storage, huge, "1e999")  # parses as infinity
    _score(storage, big_passed, "1.0", passed="Infinity")
    ids = [good, nan, inf, huge, big_passed, "scn-" + "9" * 16]  # the last has no result
    board = TestClient(build_app(settings))
    got = board.post("/v1/admin/scores/summaries", json={"scenario_ids": ids},
                     headers={"authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"})
    assert got.status_code == 200, got.text
    assert json.loads(got.text) == {"summaries": {good: {
        "tenant_id": "acme", "subject": "lea", "score": 0.5, "passed": 1, "total": 2,
        "completed_at": "2026-12-01T09:00:00Z", "failed": ["route-present"]}}}
