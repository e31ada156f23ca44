"""Attack: an instructor's timeline lists a learner's recordings in one batch
(`POST /v1/admin/scores/recordings`); the batch names a tenant and a learner, and could be
made to carry another tenant's (or another learner's) lab ids.

Before: the timeline asked once per lab (four at a time), each a full operator read with no
tenant in it. After: one request per 100 labs, and the scoreboard lists only labs whose
signed score names the tenant and learner the batch is for; any other lab is left out, as
one without results is. Only the operator token may ask; more than 100 ids is a 422.
Real scoreboard app, results on the filesystem store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import load_settings
from forge.evidence.artifacts import results_dir
from forge.services.scoreboard.app import build_app

from ..services.conftest import SECRETS, prod_environ

PATH = "/v1/admin/scores/recordings"
OPERATOR = {"authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}


def _score(storage: Path, sid: str, tenant: str, subject: str) -> None:
    where = results_dir(storage, sid)
    where.mkdir(parents=True)
    (where / "score.json").write_text(
        f'{{"scenario_id": "{sid}", "tenant_id": "{tenant}", "subject": "{subject}", '
        '"track": "netplus", "score": 1.0, "passed": 2, "total": 2, '
        '"completed_at": "2026-12-01T09:00:00Z", "criteria": []}')


@pytest.mark.usefixtures("sqlite_only_store")  # reads result files only, never the store
def test_a_batch_lists_only_its_own_tenants_learners_labs(tmp_path: Path,
                                                          nats: NatsServer) -> None:
    storage = tmp_path / "storage"
    settings = load_settings(prod_environ(storage, **nats.client_env()))
    mine, globex, other_learner = (f"scn-{n}" + "0" * 15 for n in "123")
    _score(storage, mine, "acme", "lea")
    _score(storage, globex, "globex", "lea")  # the same learner name, another tenant
    _score(storage, other_learner, "acme", "leo")
    board = TestClient(build_app(settings))
    batch = {"tenant_id": "acme", "subject": "lea",
             "scenario_ids": [mine, globex, other_learner, "scn-" + "9" * 16]}
    got = board.post(PATH, json=batch, headers=OPERATOR)
    assert got.status_code == 200, got.text
    assert got.json() == {"recordings": {mine: []}}  # graded, no recording: listed, empty
    as_globex = board.post(PATH, json={**batch, "tenant_id": "globex"}, headers=OPERATOR)
    assert as_globex.json() == {"recordings": {globex: []}}
    # Only the operator token; well-formed ids, at most 100 of them.
    assert board.post(PATH, json=batch).status_code == 401
    for bad in ({**batch, "scenario_ids": ["../x"]},
                {**batch, "scenario_ids": [mine] * 101},
                {k: v for k, v in batch.items() if k != "tenant_id"}):
        assert board.post(PATH, json=bad, headers=OPERATOR).status_code == 422, bad
