"""Every named crash point (forge.faults.POINTS), once: kill -9 there, restart, and the
learner still gets exactly one verdict, with nothing leaked, held or half-written.

The armed service dies at its point during an ordinary journey (spawn, wait, submit,
verdict) driven by a patient client that retries across the outage, as a learner's browser
would; the platform is healed by starting the dead service again without the crash point.
"""

from __future__ import annotations

import httpx
import pytest

from forge.faults import POINTS
from tests.drills.conftest import Drill, Service

from .conftest import (
    TERMINAL,
    assert_clean,
    call,
    finalized_verdicts,
    new_request_id,
    supervised,
    verdicts_for,
    wait_until,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]


# The point where the store does the most also runs on PostgreSQL: a spawn recorded but never
# answered (its pending idempotency record, and its scenario failed under a row lock and its
# slot released by the retry). The others: SQLite only (time budget of `make test`).
ON_POSTGRES = ("spawn.recorded",)
CASES = [pytest.param(point, engine, id=f"{point}-{engine if point in ON_POSTGRES else 'sqlite_only'}",
                      marks=() if point in ON_POSTGRES else pytest.mark.sqlite_only)
         for point in POINTS for engine in ("sqlite", "postgres")
         if engine == "sqlite" or point in ON_POSTGRES]


@pytest.mark.parametrize(("point", "drill"), CASES, indirect=["drill"])
def test_crash_point_loses_nothing(drill: Drill, point: str) -> None:
    d = drill
    # A spawn cut off by the crash is settled by its retry once it has been pending this
    # long (30 s by default); spawns here answer within a second.
    d.extra["FORGE_SPAWN_PENDING_TIMEOUT_S"] = "6"
    env = d.env()
    d.forge_ok("keys", "generate")
    d.start()
    learner = d.learner("chaos", "ann")
    armed = d.services[point.split(".")[0]]
    # staging: a crash point is refused in prod (a leftover one would crash-loop it)
    armed.restart(d.env(FORGE_CRASH_POINT=point, FORGE_ENV="staging"))
    with supervised(d, env):
        _journey(d, env, learner, armed, point)
    scenarios = httpx.get(f"{d.url('orchestrator')}/v1/scenarios", headers=d.operator(),
                          timeout=10).json()["items"]
    assert_clean(d, [s["scenario_id"] for s in scenarios])
    # Counted again at the end: a second verdict written late shows here.
    assert {s["scenario_id"]: verdicts_for(d, s["scenario_id"]) for s in scenarios
            if s["state"] == "completed"} == {s["scenario_id"]: 1 for s in scenarios
                                              if s["state"] == "completed"}


def _journey(d: Drill, env: dict[str, str], learner: dict[str, str], armed: Service,
             point: str) -> None:
    """Spawn, wait running, submit, verdict: exactly one, though `armed` died on the way."""
    spawn_url = f"{d.url('spawn')}/v1/spawn"
    resp = call(d, env, "POST", spawn_url, ok=(200, 201), headers=learner, timeout=150,
                json={"track": "netplus", "request_id": new_request_id()})
    sid = resp.json()["scenario_id"]
    body = wait_until(d, env, learner, sid, {"running", *TERMINAL})
    assert body["state"] == "running", body
    call(d, env, "POST", f"{d.url('spawn')}/v1/scenarios/{sid}/submit", ok=(202, 409),
         headers=learner)
    body = wait_until(d, env, learner, sid, TERMINAL)
    assert body["state"] == "completed", body
    score = call(d, env, "GET", f"{d.url('scoreboard')}/v1/scores/{sid}", ok=(200,),
                 headers=learner).json()
    assert score["scenario_id"] == sid
    assert getattr(armed, "restarts", 0) >= 1, f"{point} was never reached"
    # The verdict's files may predate its finalization (a crash between the scoreboard's
    # write and its ack): the redelivered completion finalizes it, once.
    assert finalized_verdicts(d, sid) == 1
