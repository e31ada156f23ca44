"""An attempt a crash left unsettled is bound to its lab or given back, by housekeeping.

A spawn_service killed between taking a learner's attempt and settling it (crash points
``spawn.recorded`` and ``spawn.published`` lie between the two) left the attempt taken and
bound to no lab: a learner allowed one attempt who then clicked Start again (a new request
id) was refused for good, and the lab the interrupted request did start counted for no
assignment, so its hints were judged as outside one. The spawn service's housekeeping now
settles such attempts once no request can still hold them: bound to the lab its request
launched, given back when it launched none.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI

from forge.classroom import assignments as asg
from forge.classroom import attempts, cohorts
from forge.classroom.cohorts import Manager
from forge.classroom.stranded_attempts import STRANDED_AFTER
from forge.config.settings import load_settings
from forge.services.spawn.app import build_app as build_spawn
from forge.store.migrate import upgrade
from forge.store.models import Scenario, ScenarioTransition
from tests.services.conftest import prod_environ, with_signing_key

ANN = Manager("acme", "ann", "instructor")


def _lab(sid: str, request_id: str, *moves: str, tenant: str = "acme", subject: str = "lea",
         template: str = "netplus", age: timedelta = timedelta(0)) -> list[object]:
    """A lab row and its moves from pending (``moves``: the states it went through)."""
    at = datetime.now(UTC) - age
    rows: list[object] = [Scenario(
        scenario_id=sid, request_id=request_id, tenant_id=tenant, subject=subject,
        track="netplus", template_id=template, plan="PRO", retention_days=7,
        state=moves[-1] if moves else "pending", state_reason="x", created_at=at,
        updated_at=at, details={})]
    before = "pending"
    for state in moves:
        rows.append(ScenarioTransition(scenario_id=sid, from_state=before, to_state=state,
                                       reason="x", at=at))
        before = state
    return rows


@pytest.fixture
def spawn_app(tmp_path: Path, db_url: str) -> Iterator[FastAPI]:
    """spawn_service's app (its housekeeping) on a fresh store, not started."""
    upgrade(db_url)
    app = build_spawn(load_settings(prod_environ(with_signing_key(tmp_path / "s"),
                                                 FORGE_DB_URL=db_url)))
    yield app
    app.state.spawn.ctx.db.dispose()


async def test_housekeeping_binds_or_gives_back_what_a_crash_left(spawn_app: FastAPI) -> None:
    db = spawn_app.state.spawn.ctx.db
    now = datetime.now(UTC)
    cohort = cohorts.create_cohort(db, ANN, "Networking 101")

    def assign() -> str:
        return asg.create_assignment(
            db, ANN, cohort.cohort_id, template_id="netplus",
            opens_at=now - timedelta(minutes=1), closes_at=now + timedelta(days=1),
            attempts_allowed=1, hints_allowed=False, known_templates={"netplus"}).assignment_id

    started, failed, never, lost, waiting = (assign() for _ in range(5))
    # Each interrupted between taking its attempt and settling it:
    for aid, request_id in ((started, "req-started"), (failed, "req-failed"),
                            (never, "req-never"), (lost, "req-lost"), (waiting, "req-waiting")):
        assert attempts.take_attempt(db, aid, "lea", request_id, 1) == (1, True)
    with db.session() as sess:
        sess.add_all([
            *_lab("scn-started", "req-started", "launching", "running"),  # launched: counts
            *_lab("scn-failed", "req-failed", "launching", "failed"),  # failed launching
            *_lab("scn-never", "req-never", "failed"),  # recorded, never published
            *_lab("scn-waiting", "req-waiting"),  # still pending: left for a later pass
            # Not lea's lab for "req-lost": another learner's, tenant's, template's, and an
            # older lab of hers that reused the request id.
            *_lab("scn-max", "req-lost", "launching", subject="max"),
            *_lab("scn-globex", "req-lost", "launching", tenant="globex"),
            *_lab("scn-dns", "req-lost", "launching", template="dns-zone"),
            *_lab("scn-old", "req-lost", "launching", age=timedelta(days=2)),
        ])
    keeper = spawn_app.state.housekeeping
    assert (await keeper.run_once(now))["assignment_attempts"] == 0  # may still be in flight
    assert asg.scenario_assignment(db, "scn-started") is None
    assert attempts.take_attempt(db, lost, "lea", "req-again", 1) is None  # her one attempt: used

    # From a clock read after the attempts were taken, not the test's start: setting up
    # on a loaded machine took over a second, and an attempt taken then was not yet
    # stranded at `now` + STRANDED_AFTER + 1 s (CI: 0 given back, not 1).
    later = datetime.now(UTC) + STRANDED_AFTER + timedelta(seconds=1)
    assert (await keeper.run_once(later))["assignment_attempts"] == 2  # never, lost
    for sid, aid, used in (("scn-started", started, 1), ("scn-failed", failed, 0)):
        bound = asg.scenario_assignment(db, sid)
        assert bound is not None and bound.assignment_id == aid  # hints judged as such
        assert bound.attempts_used == used  # a lab failed before it ran uses no attempt
    for sid in ("scn-never", "scn-waiting", "scn-max", "scn-globex", "scn-dns", "scn-old"):
        assert asg.scenario_assignment(db, sid) is None, sid
    assert attempts.take_attempt(db, lost, "lea", "req-again", 1) == (1, True)  # hers again
    assert attempts.take_attempt(db, never, "lea", "req-again2", 1) == (1, True)
    assert attempts.take_attempt(db, started, "lea", "req-more", 1) is None  # that one was used
    assert attempts.take_attempt(db, waiting, "lea", "req-more", 1) is None  # still held
    with db.session() as sess:  # the pending lab ends without launching: given back next
        row = sess.get(Scenario, "scn-waiting")
        assert row is not None
        row.state = "expired"
    attempts.settle_attempt(db, lost, "lea", 1, "scn-again")  # those spawns went through
    attempts.settle_attempt(db, never, "lea", 1, "scn-again2")
    assert (await keeper.run_once(later))["assignment_attempts"] == 1  # the expired one
    assert attempts.take_attempt(db, waiting, "lea", "req-more", 1) == (1, True)


async def test_a_late_retry_binds_its_lab_though_housekeeping_gave_its_attempt_back(
    spawn_app: FastAPI,
) -> None:
    """The race both reviews named: a retry of the interrupted request admitted on its old
    attempt just before housekeeping gave that attempt back. Its lab still counts (an
    attempt taken anew for it), and a number taken again meanwhile by another request is
    not that lab's: it stays the other request's, to settle or give back."""
    db = spawn_app.state.spawn.ctx.db
    now = datetime.now(UTC)
    cohort = cohorts.create_cohort(db, ANN, "Networking 101")
    aid = asg.create_assignment(
        db, ANN, cohort.cohort_id, template_id="netplus", opens_at=now - timedelta(minutes=1),
        closes_at=now + timedelta(days=1), attempts_allowed=1, hints_allowed=False,
        known_templates={"netplus"}).assignment_id
    assert attempts.take_attempt(db, aid, "lea", "req-late", 1) == (1, True)
    # The retry is admitted on attempt 1 (still there) ...
    assert attempts.attempt_of_request(db, aid, "lea", "req-late") == 1
    # ... housekeeping gives it back before the retry's lab is recorded ...
    # From a clock read after the attempts were taken, not the test's start: setting up
    # on a loaded machine took over a second, and an attempt taken then was not yet
    # stranded at `now` + STRANDED_AFTER + 1 s (CI: 0 given back, not 1).
    later = datetime.now(UTC) + STRANDED_AFTER + timedelta(seconds=1)
    assert (await spawn_app.state.housekeeping.run_once(later))["assignment_attempts"] == 1
    # ... and another start takes number 1 again meanwhile.
    assert attempts.take_attempt(db, aid, "lea", "req-other", 1) == (1, True)
    attempts.settle_attempt(db, aid, "lea", 1, "scn-late", request_id="req-late")
    late = asg.scenario_assignment(db, "scn-late")
    assert late is not None and late.assignment_id == aid and late.attempts_used == 2
    attempts.settle_attempt(db, aid, "lea", 1, None, request_id="req-late")  # not its to give
    assert attempts.attempt_of_request(db, aid, "lea", "req-other") == 1
    attempts.settle_attempt(db, aid, "lea", 1, "scn-other", request_id="req-other")
    other = asg.scenario_assignment(db, "scn-other")
    assert other is not None and other.attempts_used == 2
