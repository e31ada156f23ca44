"""kill -9 of the orchestrator while labs are in flight (the two drills of issue 13).

Grading: six labs submitted together, the orchestrator killed at the first `grading`;
after a restart all six get their verdict. Launching: ten spawns accepted together, the
orchestrator killed at the first `launching`; after a restart all ten labs run with every
host up. In both, nothing is leaked or held afterwards.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from forge.store import normalize_url
from tests.drills.conftest import Drill, spawn_lab

from .conftest import (
    assert_clean,
    call,
    finalized_verdicts,
    new_request_id,
    verdicts_for,
    wait_until,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _kill_when(d: Drill, state: str, timeout: float = 120) -> None:
    """SIGKILL the orchestrator's process group as soon as any scenario shows ``state``.

    The store is read directly, not through the orchestrator's API: under load an API
    answer took long enough for every lab to pass through a short state unseen."""
    proc = d.services["orchestrator"].proc
    assert proc is not None
    engine = create_engine(normalize_url(d.db_url))
    try:
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as db:
                states = [r[0] for r in db.execute(text("SELECT state FROM scenarios"))]
            if state in states:
                break
            assert time.monotonic() < deadline, f"no scenario reached {state}: {states}"
            time.sleep(0.005)
    finally:
        engine.dispose()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_kill_during_grading_loses_no_verdict(drill: Drill) -> None:
    d = drill
    env = d.env()
    d.forge_ok("keys", "generate")
    d.start()
    learner = d.learner("chaos", "ben")
    ids = [spawn_lab(d, learner) for _ in range(6)]

    def submit(sid: str) -> int:
        return httpx.post(f"{d.url('spawn')}/v1/scenarios/{sid}/submit", headers=learner,
                          timeout=30).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(submit, ids))
    assert codes == [202] * 6
    _kill_when(d, "grading")
    d.services["orchestrator"].proc = None
    d.services["orchestrator"].start(env)
    d.services["orchestrator"].wait_ready(90)
    for sid in ids:
        body = wait_until(d, env, learner, sid, {"completed", "failed", "expired", "deleted"})
        assert body["state"] == "completed", body
        call(d, env, "GET", f"{d.url('scoreboard')}/v1/scores/{sid}", ok=(200,),
             headers=learner)
        assert finalized_verdicts(d, sid) == 1
    assert_clean(d, ids)
    # Counted again after the cleanup checks: a second verdict written late shows here.
    assert [verdicts_for(d, sid) for sid in ids] == [1] * len(ids)


def test_kill_during_launching_gives_every_accepted_spawn_a_whole_lab(drill: Drill) -> None:
    d = drill
    env = d.env()
    d.forge_ok("keys", "generate")
    d.start()
    learner = d.learner("chaos", "cat")

    def spawn(_: int) -> dict[str, Any]:
        resp = httpx.post(f"{d.url('spawn')}/v1/spawn", headers=learner, timeout=60,
                          json={"track": "netplus", "request_id": new_request_id()})
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    with ThreadPoolExecutor(10) as pool:
        accepted = list(pool.map(spawn, range(10)))
        _kill_when(d, "launching")
    ids = [a["scenario_id"] for a in accepted]
    d.services["orchestrator"].proc = None
    d.services["orchestrator"].start(env)
    d.services["orchestrator"].wait_ready(90)
    for sid in ids:
        body = wait_until(d, env, learner, sid, {"running", "completed", "failed", "expired",
                                                 "deleted"}, timeout=240)
        assert body["state"] == "running", body
        detail = httpx.get(f"{d.url('orchestrator')}/v1/scenarios/{sid}",
                           headers=d.operator(), timeout=10).json()
        assert set(detail["hosts"]) == {"learner", "router", "target"}, detail
        assert all(detail["hosts"].values()), detail  # every host has its addresses
    for sid in ids:
        call(d, env, "DELETE", f"{d.url('orchestrator')}/v1/scenarios/{sid}", ok=(200,),
             headers=d.operator())
    for sid in ids:
        wait_until(d, env, learner, sid, {"deleted"})
    assert_clean(d, ids)
