"""Replicas are processes: four OS processes race on one PostgreSQL database.

Threads of one process share an engine (and, on SQLite, a process-wide write lock), so they
cannot show that token replay, idempotency and quotas are atomic across replicas. These tests
start separate interpreters (multiprocessing, spawn context), line them up on a barrier and
check the database's answer: exactly one winner, one record, never over the limit.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from forge.quotas.limiter import active_slots
from forge.store import Database, idempotency
from forge.store.migrate import head_revision
from forge.store.models import (
    ApiKey,
    Assignment,
    AssignmentAttempt,
    Base,
    Cohort,
    Enrolment,
    FailedEvent,
    IdempotencyRecord,
    QuotaSlot,
    ReplayJti,
    Scenario,
)
from forge.store.models import Entitlement as GrantRow

from ..support import store_race
from ..support.postgres import PostgresCluster

REPLICAS = 4
JOIN_TIMEOUT_S = 180


def run_replicas(target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]]
                 ) -> list[Any]:
    """Run `target` in REPLICAS processes sharing a barrier; their reports, in any order."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(REPLICAS)
    out = ctx.Queue()
    procs = [ctx.Process(target=store_race.entry, args=(target, *args_for(i), barrier, out),
                         daemon=True) for i in range(REPLICAS)]
    for proc in procs:
        proc.start()
    try:
        reports = [out.get(timeout=JOIN_TIMEOUT_S) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
    crashed = [r for r in reports if isinstance(r, store_race.WorkerCrashed)]
    assert not crashed, "\n".join(str(c) for c in crashed)
    assert [p.exitcode for p in procs] == [0] * REPLICAS
    return reports


def test_each_token_jti_is_consumed_by_exactly_one_replica(postgres_url: str) -> None:
    jtis = [f"jti-{n:03d}" for n in range(40)]
    reports = run_replicas(store_race.consume_jtis, lambda i: (postgres_url, jtis))
    wins = [jti for won in reports for jti in won]
    assert sorted(wins) == jtis  # every jti used once: no double use, none lost
    db = Database(postgres_url)
    with db.read() as sess:
        assert sess.scalar(select(func.count()).select_from(ReplayJti)) == len(jtis)
    db.dispose()


def test_one_request_id_makes_one_scenario_and_one_answer_across_replicas(
    postgres_url: str,
) -> None:
    request_ids = [f"req-race-{n:04d}-0123456789" for n in range(8)]
    reports = run_replicas(store_race.same_request_id,
                           lambda i: (postgres_url, request_ids, i))
    db = Database(postgres_url)
    for request_id in request_ids:
        rounds = [(first, again) for report in reports
                  for rid, first, again in report if rid == request_id]
        assert len(rounds) == REPLICAS
        created = [first for first, _ in rounds if first[0] == "created"]
        assert len(created) == 1, rounds  # exactly one replica created it
        answer = created[0][1][1]
        # The rest saw it in flight (409) or already answered (200 with the same body).
        others = [first for first, _ in rounds if first[0] != "created"]
        assert all(o in (("error", (409, "request_in_progress")), ("answer", (200, answer)))
                   for o in others), others
        # Asked again once everyone had answered: every replica gives the winner's answer.
        for first, again in rounds:
            if first[0] != "created":
                assert again == ("answer", (200, answer))
        key = idempotency.record_key(store_race.TENANT, store_race.SUBJECT, request_id)
        with db.read() as sess:
            records = sess.execute(select(IdempotencyRecord.status_code,
                                          IdempotencyRecord.response)
                                   .where(IdempotencyRecord.request_id == key)).all()
            scenarios = sess.scalars(select(Scenario.scenario_id)
                                     .where(Scenario.request_id == request_id)).all()
        assert [tuple(r) for r in records] == [(201, answer)]
        assert scenarios == [answer["scenario_id"]]
    # One live slot per scenario: the losers' slots were rolled back with their transaction.
    assert active_slots(db, store_race.TENANT) == len(request_ids)
    db.dispose()


def test_replicas_never_take_more_slots_than_the_limit(postgres_url: str) -> None:
    limit, attempts = 5, 12
    reports = run_replicas(store_race.take_slots,
                           lambda i: (postgres_url, attempts, limit, i))
    won = [sid for sids, _ in reports for sid in sids]
    refused = sum(n for _, n in reports)
    assert len(won) == limit and refused == REPLICAS * attempts - limit
    db = Database(postgres_url)
    with db.read() as sess:
        held = sess.scalars(select(QuotaSlot.scenario_id)
                            .where(QuotaSlot.released_at.is_(None))).all()
    assert sorted(held) == sorted(won)
    db.dispose()


def _assignment(db: Database, assignment_id: str, allowed: int) -> None:
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Cohort(cohort_id=f"coh-{assignment_id}", tenant_id="acme", name="race",
                        created_by="t", idp_group=None, created_at=now))
        sess.flush()
        sess.add(Assignment(assignment_id=assignment_id, cohort_id=f"coh-{assignment_id}",
                            tenant_id="acme", template_id="netplus-intro",
                            opens_at=now - timedelta(hours=1), closes_at=now + timedelta(hours=1),
                            attempts_allowed=allowed, hints_allowed=True, created_by="t",
                            created_at=now))


def _attempts_per_learner(db: Database, assignment_id: str) -> list[tuple[str, int]]:
    with db.read() as sess:
        return sorted((str(s), int(n)) for s, n in sess.execute(
            select(AssignmentAttempt.subject, func.count())
            .where(AssignmentAttempt.assignment_id == assignment_id)
            .group_by(AssignmentAttempt.subject)).all())


def test_replicas_never_take_more_assignment_attempts_than_allowed(postgres_url: str) -> None:
    """One attempt allowed: of replicas starting the same learner's assignment at once,
    exactly one takes it (a count and a highest number read in two statements let a second
    replica take attempt 2 under PostgreSQL's read committed)."""
    rounds, db = 40, Database(postgres_url)
    _assignment(db, "asg-race", 1)
    reports = run_replicas(store_race.take_attempts,
                           lambda i: (postgres_url, "asg-race", rounds, 1, False, i))
    won = sorted(n for got in reports for n, number, _ in got if number is not None)
    assert won == list(range(rounds))  # each learner's one attempt went to exactly one
    assert _attempts_per_learner(db, "asg-race") == sorted(
        (f"learner-{n}", 1) for n in range(rounds))
    db.dispose()


def test_one_request_retried_on_every_replica_takes_one_attempt(postgres_url: str) -> None:
    """The same request id on every replica at once (a retried start): one attempt is taken
    and every replica answers with it, never a second attempt or a refusal."""
    rounds, db = 40, Database(postgres_url)
    _assignment(db, "asg-retry", 2)
    reports = run_replicas(store_race.take_attempts,
                           lambda i: (postgres_url, "asg-retry", rounds, 2, True, i))
    for n in range(rounds):
        answers = [(number, here) for got in reports for m, number, here in got if m == n]
        assert sorted(answers) == [(1, False)] * (REPLICAS - 1) + [(1, True)], (n, answers)
    assert _attempts_per_learner(db, "asg-retry") == sorted(
        (f"learner-{n}", 1) for n in range(rounds))
    db.dispose()


def test_new_sign_in_keys_asked_at_once_leave_one_live_key(postgres_url: str) -> None:
    """"New sign-in key" from every replica at once: the learner ends with one live key
    (each replica read the same live keys and left its own new one live before)."""
    rounds = 30
    run_replicas(store_race.replace_keys, lambda i: (postgres_url, rounds, i))
    db = Database(postgres_url)
    with db.read() as sess:
        live = sess.execute(select(ApiKey.subject, func.count()).where(
            ApiKey.revoked_at.is_(None)).group_by(ApiKey.subject)).all()
    assert sorted((str(s), int(n)) for s, n in live) == sorted(
        (f"keyed-{n}", 1) for n in range(rounds))
    db.dispose()


def test_grants_for_one_learner_at_once_leave_one_grant(postgres_url: str) -> None:
    """Two checkouts of one learner at once: before, the second insert failed on the
    unique key (a 500 after its checkout token was used up)."""
    rounds = 20
    run_replicas(store_race.grant_plan, lambda i: (postgres_url, rounds, i))
    db = Database(postgres_url)
    with db.read() as sess:
        owners = sess.execute(select(GrantRow.subject, func.count())
                              .group_by(GrantRow.subject)).all()
    assert sorted((str(s), int(n)) for s, n in owners) == sorted(
        (f"granted-{n}", 1) for n in range(rounds))
    db.dispose()


def test_one_message_dead_lettered_by_every_replica_is_one_record(postgres_url: str) -> None:
    """Every replica gives up on the same message at once: one failed-event record with
    every attempt counted, not one record per replica (reprocessed once per record)."""
    rounds = 20
    run_replicas(store_race.fail_event, lambda i: (postgres_url, rounds, i))
    db = Database(postgres_url)
    with db.read() as sess:
        rows = sess.execute(select(FailedEvent.msg_id, func.count(),
                                   func.sum(FailedEvent.attempts))
                            .group_by(FailedEvent.msg_id)).all()
    assert sorted((str(m), int(n), int(a)) for m, n, a in rows) == sorted(
        (f"msg-{n}", 1, REPLICAS) for n in range(rounds))
    db.dispose()


def test_the_same_class_list_enrolled_at_once_enrols_each_learner_once(
        postgres_url: str) -> None:
    """Every replica enrols the same two learners at once: nobody gets a 500 on the key,
    and the counts of newly enrolled add up to two per round."""
    rounds, db = 20, Database(postgres_url)
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Cohort(cohort_id="coh-00000000000000aa", tenant_id=store_race.TENANT,
                        name="race", created_by="t", idp_group=None, created_at=now))
    reports = run_replicas(store_race.enrol_list,
                           lambda i: (postgres_url, "coh-00000000000000aa", rounds, i))
    assert [sum(got[n] for got in reports) for n in range(rounds)] == [2] * rounds
    with db.read() as sess:
        enrolled = sess.scalar(select(func.count()).select_from(Enrolment))
    assert enrolled == 2 * rounds
    db.dispose()


def test_replicas_starting_together_migrate_an_empty_database_once(
    postgres_cluster: PostgresCluster,
) -> None:
    # Every service runs the migrations at start; replicas of a fresh install start together.
    url = postgres_cluster.create_database(migrated=False)
    try:
        versions = run_replicas(store_race.migrate, lambda i: (url,))
        assert versions == [head_revision()] * REPLICAS
        db = Database(url)
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        db.dispose()
    finally:
        postgres_cluster.drop_database(url)
