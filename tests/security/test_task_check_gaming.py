"""Attack: use "Check this task" to game the grade or to hammer the lab.

Checking a task runs its checks on the live lab and records the run; a learner could hope
that a passing check counts towards the score (check at a lucky moment, then break things),
or spam checks (every second, many tasks, many requests at once) to probe the grader. Before,
there was no such feature; now: a recorded check run never changes the signed score (the
scoreboard scores only the final grading; the runs are listed in the evidence as not final),
and the limits (one check per task per 20 s, N per lab) hold under concurrent requests, with a
429 and a Retry-After, recording nothing refused.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from forge.config import Settings
from forge.errors import ForgeError
from forge.evidence.artifacts import read_results
from forge.grading.learner_aids import (
    CheckLimits,
    begin_task_check,
    cancel_task_check,
    finish_task_check,
)
from forge.services.scoreboard.scoring import Scorer
from forge.signing.keystore import SigningKeyring
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Scenario, TaskCheckRun
from forge.templates.registry import TemplateRegistry
from forge_verify.bundle import read_bundle

from ..conftest import TEMPLATE_FIXTURES
from ..scoreboard.conftest import TEMPLATE, build_completion, prod_env  # noqa: F401  (fixture)


def _row(db: Database, sid: str, state: str = "running") -> None:
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id="acme",
                          subject="alice", track="netplus", template_id=TEMPLATE, plan="PRO",
                          state=state, created_at=now, updated_at=now, details={}))


def _runs(db: Database, sid: str) -> int:
    with db.read() as sess:
        return len(list(sess.scalars(
            TaskCheckRun.__table__.select().where(TaskCheckRun.scenario_id == sid))))


def test_check_spam_is_refused_with_retry_after_and_records_nothing(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    limits = CheckLimits(every_s=20, per_lab=3)
    try:
        _row(db, "scn-00000000000000a1")
        sid = "scn-00000000000000a1"
        begin_task_check(db, sid, "acme", "saved-page", limits)
        with pytest.raises(ForgeError) as soon:
            begin_task_check(db, sid, "acme", "saved-page", limits)
        assert soon.value.status == 429 and soon.value.code == "check_too_soon"
        assert soon.value.headers is not None and 1 <= int(soon.value.headers["Retry-After"]) <= 20
        begin_task_check(db, sid, "acme", "route-present", limits)
        begin_task_check(db, sid, "acme", "third-task", limits)
        with pytest.raises(ForgeError) as spent:
            begin_task_check(db, sid, "acme", "fourth-task", limits)
        assert spent.value.status == 429 and spent.value.code == "check_limit"
        assert _runs(db, sid) == 3  # the refused ones left no trace

        # Many requests at once for one task: exactly one runs.
        racing = "scn-00000000000000a2"
        _row(db, racing)

        def attempt(_: int) -> bool:
            try:
                begin_task_check(db, racing, "acme", "saved-page", limits)
            except ForgeError as exc:
                assert exc.status == 429
                return False
            return True

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(attempt, range(8))) == 1
        assert _runs(db, racing) == 1

        # Another tenant's lab, or a lab no longer running: no check at all.
        with pytest.raises(ForgeError) as stranger:
            begin_task_check(db, racing, "evil", "route-present", limits)
        assert stranger.value.status == 404
        _row(db, "scn-00000000000000a3", state="grading")
        with pytest.raises(ForgeError) as late:
            begin_task_check(db, "scn-00000000000000a3", "acme", "saved-page", limits)
        assert late.value.status == 409
    finally:
        db.dispose()


def test_a_passing_check_run_never_changes_the_signed_score(
    prod_env: Settings, tmp_path: Path  # noqa: F811
) -> None:
    upgrade(prod_env.db_url)
    db = Database(prod_env.db_url)
    ring = SigningKeyring(tmp_path / "keys")
    ring.ensure()
    try:
        done = build_completion(prod_env, passed=False, record_state=None)  # route-present fails at grading
        _row(db, done.scenario_id)
        run = begin_task_check(db, done.scenario_id, "acme", "route-present", CheckLimits())
        finish_task_check(db, run, True)  # it passed when the learner checked it
        registry = TemplateRegistry.load(TEMPLATE_FIXTURES)
        finalized = Scorer(prod_env, registry, ring, db=db).score(done.event)
        assert finalized.event.score == round(2 / 3, 6)  # only the final grading counts
        files = read_results(prod_env.storage_root, done.scenario_id)
        assert files is not None
        doc = json.loads(files["score.json"])
        route = next(c for c in doc["criteria"] if c["id"] == "route-present")
        assert route["passed"] is False and "hints" not in doc
        aids = json.loads(read_bundle(files["evidence.tar.zst"])["aids.json"])
        assert [(c["criterion"], c["passed"]) for c in aids["task_checks"]] == [
            ("route-present", True)]
    finally:
        db.dispose()


def test_a_check_the_node_refused_uses_up_nothing(db_url: str) -> None:
    # Before: a check refused by a busy node (409 lab_busy) was recorded as run, so it
    # counted toward the lab's limit, started the task's 20 s wait and showed in the
    # evidence, although nothing was checked. Now it is forgotten (cancel_task_check).
    upgrade(db_url)
    db = Database(db_url)
    limits = CheckLimits(every_s=20, per_lab=3)
    sid = "scn-00000000000000b1"
    try:
        _row(db, sid)
        refused = begin_task_check(db, sid, "acme", "saved-page", limits)
        cancel_task_check(db, refused)
        assert _runs(db, sid) == 0
        performed = begin_task_check(db, sid, "acme", "saved-page", limits)  # no wait
        finish_task_check(db, performed, True)
        cancel_task_check(db, performed)  # an answered run is never forgotten
        assert _runs(db, sid) == 1
    finally:
        db.dispose()


def _check_twice(tmp_path: Path, db_url: str, node_url: str,
                 sid: str) -> tuple[list[Any], int]:
    """A learner checks task saved-page of lab `sid` twice in a row through spawn_service,
    whose lab node (ORCHESTRATOR_URL) is `node_url`: the two answers and the runs counted."""
    from fastapi.testclient import TestClient

    from forge.config.settings import load_settings
    from forge.entitlements.grants import grant
    from forge.identity.apikeys import create_api_key
    from forge.services.spawn.app import build_app

    from ..services.conftest import prod_environ, with_signing_key

    upgrade(db_url)
    settings = load_settings(prod_environ(with_signing_key(tmp_path / "storage"),
                                          FORGE_DB_URL=db_url, ORCHESTRATOR_URL=node_url))
    app = build_app(settings)
    db = app.state.spawn.ctx.db
    try:
        _row(db, sid)
        grant(db, "acme", "PRO", "alice")
        key = {"x-api-key": create_api_key(db, "acme", "alice").plaintext}
        with TestClient(app, raise_server_exceptions=False) as client:
            answers = [client.post(f"/v1/scenarios/{sid}/checks/saved-page", headers=key)
                       for _ in range(2)]  # the second is not 429 check_too_soon
        return answers, _runs(db, sid)
    finally:
        db.dispose()


def test_a_check_that_never_reached_the_node_uses_up_nothing(tmp_path: Path,
                                                             db_url: str) -> None:
    """The lab node (here ORCHESTRATOR_URL) takes no connection: the check certainly did
    not run, so it is forgotten (502 to the learner), not counted against the lab's checks,
    the task's 20 s wait or the evidence; the learner may check again at once."""
    from forge.bus.ports import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    answers, runs = _check_twice(tmp_path, db_url, dead, "scn-00000000000000b2")
    for resp in answers:
        assert resp.status_code == 502, resp.text
        assert resp.json()["error"] == "backend_unreachable"
    assert runs == 0


def test_a_check_the_node_cut_short_when_stopping_uses_up_nothing(tmp_path: Path,
                                                                   db_url: str) -> None:
    """The lab node answers 503 `service_stopping` (a stop of its service cut the checks
    short: no result). The learner gets that 503 with its Retry-After, and the run is
    forgotten: not counted, no 20 s wait, nothing in the evidence. The node here is a
    stand-in HTTP server giving that answer (the real one's is in
    tests/orchestrator/test_stopped_midway.py).

    Its first answer is the real node's refusal of a task checked only at Submit: the API
    passes it on whole, its details naming the field and its message without the internal
    service's name. Before, it read "orchestrator: criterion: this task is checked only
    when you submit" with no details (the extend and destroy relay already did so)."""
    import http.server
    import threading

    answers_given: list[int] = []

    class Stopping(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            answers_given.append(1)
            if len(answers_given) == 1:
                status, body = 409, json.dumps({
                    "error": "checked_at_submit", "details": [{"field": "criterion"}],
                    "message": "criterion: this task is checked only when you submit"})
            else:
                status, body = 503, json.dumps({
                    "error": "service_stopping", "details": [],
                    "message": "criterion: the lab's service is restarting"})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "5")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_args: object) -> None:
            pass

    node = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stopping)
    threading.Thread(target=node.serve_forever, daemon=True).start()
    try:
        answers, runs = _check_twice(tmp_path, db_url,
                                     f"http://127.0.0.1:{node.server_address[1]}",
                                     "scn-00000000000000b3")
    finally:
        node.shutdown()
        node.server_close()
    refused, stopping = answers
    assert refused.status_code == 409, refused.text
    assert refused.json() == {"error": "checked_at_submit", "details": [{"field": "criterion"}],
                              "message": "criterion: this task is checked only when you submit"}
    assert stopping.status_code == 503, stopping.text
    assert stopping.json()["error"] == "service_stopping"
    assert stopping.headers["retry-after"] == "5"
    assert runs == 0
