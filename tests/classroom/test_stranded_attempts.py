"""An attempt a crash left unsettled is bound to its lab or given back, by housekeeping.

A spawn_service killed between taking a learner's attempt and settling it (crash points
``spawn.recorded`` and ``spawn.published`` lie between the two) left the attempt taken and
bound to no lab: a learner allowed one attempt who then clicked Start again (a new request
id) was refused for good, and the lab the interrupted request did start counted for no
assignment, so its hints were judged as outside one. The spawn service's housekeeping now
settles such attempts once no request can still hold them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from forge.classroom import assignments as asg
from forge.classroom import cohorts
from forge.classroom.cohorts import Manager
from forge.classroom.stranded_attempts import STRANDED_AFTER
from forge.config.settings import load_settings
from forge.services.spawn.app import build_app as build_spawn
from forge.store.migrate import upgrade
from forge.store.models import Scenario
from tests.services.conftest import prod_environ, with_signing_key

ANN = Manager("acme", "ann", "instructor")


def _scenario(sid: str, request_id: str, tenant: str, subject: str) -> Scenario:
    now = datetime.now(UTC)
    return Scenario(scenario_id=sid, request_id=request_id, tenant_id=tenant,
                    subject=subject, track="netplus", template_id="netplus", plan="PRO",
                    retention_days=7, state="running", state_reason="running",
                    created_at=now, updated_at=now, details={})


async def test_housekeeping_binds_or_gives_back_what_a_crash_left(
    tmp_path: Path, db_url: str,
) -> None:
    upgrade(db_url)
    app = build_spawn(load_settings(prod_environ(with_signing_key(tmp_path / "s"),
                                                 FORGE_DB_URL=db_url)))
    db = app.state.spawn.ctx.db
    now = datetime.now(UTC)
    cohort = cohorts.create_cohort(db, ANN, "Networking 101")

    def assign() -> str:
        return asg.create_assignment(
            db, ANN, cohort.cohort_id, template_id="netplus",
            opens_at=now - timedelta(minutes=1), closes_at=now + timedelta(days=1),
            attempts_allowed=1, hints_allowed=False, known_templates={"netplus"}).assignment_id

    started, lost = assign(), assign()
    # Interrupted after the lab was recorded: its attempt is the lab's.
    assert asg.take_attempt(db, started, "lea", "req-started", 1) == (1, True)
    # Interrupted before: no lab; another learner's lab with the same request id is not hers.
    assert asg.take_attempt(db, lost, "lea", "req-lost", 1) == (1, True)
    with db.session() as sess:
        sess.add_all([_scenario("scn-started", "req-started", "acme", "lea"),
                      _scenario("scn-other", "req-lost", "acme", "max")])
    keeper = app.state.housekeeping
    assert (await keeper.run_once(now))["assignment_attempts"] == 0  # may still be in flight
    assert asg.scenario_assignment(db, "scn-started") is None
    assert asg.take_attempt(db, lost, "lea", "req-again", 1) is None  # her one attempt: used

    later = now + STRANDED_AFTER + timedelta(seconds=1)
    assert (await keeper.run_once(later))["assignment_attempts"] == 1  # given back
    bound = asg.scenario_assignment(db, "scn-started")
    assert bound is not None and bound.assignment_id == started  # its hints: judged as such
    assert bound.attempts_used == 1
    assert asg.scenario_assignment(db, "scn-other") is None
    assert asg.take_attempt(db, lost, "lea", "req-again", 1) == (1, True)  # hers again
    assert asg.take_attempt(db, started, "lea", "req-more", 1) is None  # that one was used
    asg.settle_attempt(db, lost, "lea", 1, "scn-again")  # that spawn went through
    assert (await keeper.run_once(later))["assignment_attempts"] == 0  # settled ones stay
    assert asg.scenario_assignment(db, "scn-started") is not None
    db.dispose()
