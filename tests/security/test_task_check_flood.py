"""Attack: flood "Check this task" to hold a lab past its end.

A task check takes the lab's lock on the node, so it never runs beside grading or teardown.
Checks used to wait in line for that lock: a learner who fired checks back to back (or from
many tabs) kept a queue in front of the reaper and of Submit, delaying the lab's expiry and
teardown by as long as the queue lasted; a lab past its end time still ran checks. Now a
check that finds the lock held is refused at once (409 `lab_busy`, never queued), and a lab
whose end time has passed runs none (409 `not_running`).

Real orchestrator (uvicorn), nats-server and store; the lab engine is the tests' stand-in
engine with a check that blocks until the test lets it finish, so "held" is not a guess.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from forge.bus import NatsServer
from forge.config import load_settings
from forge.runtime.base import ExecResult, LabInfo
from forge.services.orchestrator.app import build_app
from forge.store.models import Scenario

from ..live_server import live_server
from ..orchestrator import test_engine_stand_in as stand_in
from ..orchestrator.conftest import FAST, OPERATOR
from ..services.conftest import prod_environ

VARIABLES = {"secret": "QmFzZTY0c2VjcmV0dG9r", "port": "24000"}


class HeldRuntime(stand_in.StandInRuntime):
    """TEST STAND-IN engine whose checks run until the test releases them."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def run_check(self, lab_id: str, host: str, argv: list[str], *,
                  stdin: bytes | None = None, timeout: float = 30.0,
                  max_output: int = 1 << 20) -> ExecResult:
        self.started.set()
        assert self.release.wait(120), "the test never released the check"
        return super().run_check(lab_id, host, argv)


@pytest.fixture
def node(tmp_path: Path, nats: NatsServer, db_url: str
         ) -> Iterator[tuple[str, HeldRuntime, object]]:
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_DB_URL=db_url))
    runtime = HeldRuntime()
    app = build_app(settings, runtime=runtime, reaper_interval_s=3600, consumer_options=FAST)
    stand_in.LABS.clear()
    try:
        with live_server(app) as url:
            yield url, runtime, app.state.orchestrator.ctx.db
    finally:
        runtime.release.set()
        stand_in.LABS.clear()


def _running(db: object, sid: str, expires_at: datetime) -> None:
    now = datetime.now(UTC)
    stand_in.LABS[sid] = LabInfo(sid, {"learner": {}}, "running")
    with db.session() as sess:  # type: ignore[attr-defined]
        sess.add(Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id="acme",
                          subject="alice", track="netplus", template_id="lab-netplus",
                          plan="PRO", state="running", created_at=now, updated_at=now,
                          expires_at=expires_at, details={"variables": VARIABLES}))


def _check(url: str, sid: str) -> httpx.Response:
    return httpx.post(f"{url}/internal/scenarios/{sid}/checks/saved-page", headers=OPERATOR,
                      timeout=120)


def test_checks_never_queue_on_a_held_lab_nor_run_past_its_end(
        node: tuple[str, HeldRuntime, object]) -> None:
    url, runtime, db = node
    sid = "scn-00000000000000f1"
    _running(db, sid, datetime.now(UTC) + timedelta(hours=1))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_check, url, sid)
        assert runtime.started.wait(60)  # the first check holds the lab
        second = pool.submit(_check, url, sid)
        try:
            refused = second.result(timeout=60)  # answered while the first still runs
        finally:
            runtime.release.set()
        assert refused.status_code == 409
        assert refused.json()["error"] == "lab_busy"
        assert "again in a moment" in refused.json()["message"]
        assert first.result().status_code == 200

    ended = "scn-00000000000000f2"
    _running(db, ended, datetime.now(UTC) - timedelta(seconds=5))
    late = _check(url, ended)
    assert late.status_code == 409 and late.json()["error"] == "not_running"
    assert "end time" in late.json()["message"]
