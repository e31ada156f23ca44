"""A template directory whose lab-netplus has hints with costs, and a running lab of it."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.pool import Pool

from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.services.common.logging import request_id_var
from forge.store.models import Scenario

from ..conftest import TEMPLATE_FIXTURES
from .conftest import MakeSpawn, SpawnEnv

HINT_TEXTS = ("Look at what the target serves on its port.",
              "Use curl -o to save the page unchanged.",
              "The router is the gateway of both subnets.")
HINTS = f"""  hints:
    - criterion: saved-page
      text: {HINT_TEXTS[0]}
    - criterion: saved-page
      cost: 0.25
      text: {HINT_TEXTS[1]}
    - text: {HINT_TEXTS[2]}
      cost: 0.1
"""


def hinted_templates(tmp_path: Path) -> Path:
    """The test templates, lab-netplus with three hints (free, 25 %, 10 %)."""
    directory = tmp_path / "hinted-templates"
    shutil.copytree(TEMPLATE_FIXTURES, directory)
    path = directory / "lab-netplus.yaml"
    path.write_text(path.read_text(encoding="utf-8") + HINTS, encoding="utf-8")
    return directory


def hinted_spawn(make_spawn: MakeSpawn, tmp_path: Path) -> SpawnEnv:
    """spawn_service on the hinted templates."""
    return make_spawn(FORGE_TEMPLATE_DIR=str(hinted_templates(tmp_path)))


def running_lab(env: SpawnEnv, tenant: str = "acme", subject: str = "alice"
                ) -> tuple[str, dict[str, str]]:
    """A netplus lab of `subject`, moved to running as its node would; (id, auth headers)."""
    grant(env.state.ctx.db, tenant, "PRO", subject)
    headers = {"x-api-key": create_api_key(env.state.ctx.db, tenant, subject).plaintext}
    with httpx.Client(base_url=env.url, timeout=20) as client:
        answer = client.post("/v1/spawn", json={"track": "netplus"}, headers=headers)
    assert answer.status_code == 201, answer.text
    sid = str(answer.json()["scenario_id"])
    set_state(env, sid, "running")
    return sid, headers


def set_state(env: SpawnEnv, sid: str, state: str) -> None:
    """Move the row as the orchestrator would."""
    with env.state.ctx.db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None
        row.state = state


@dataclass(frozen=True)
class Reads:
    """A GET's JSON answer and how many store connections its handling took."""

    body: Any
    checkouts: int


def reads_of(client: httpx.Client, path: str) -> Reads:
    """GET ``path`` (the service runs in this process) counting the store connections
    checked out while the service handled it: by its request id, which the service's
    worker threads see too, so another request or a background task is never counted."""
    rid = uuid.uuid4().hex
    taken: list[str | None] = []

    def checkout(*_: object) -> None:
        if request_id_var.get() == rid:
            taken.append(rid)

    event.listen(Pool, "checkout", checkout)
    try:
        answer = client.get(path, headers={"x-request-id": rid})
    finally:
        event.remove(Pool, "checkout", checkout)
    assert answer.status_code == 200, answer.text
    return Reads(answer.json(), len(taken))
