"""Workers for the cross-process store races (run in fresh processes: multiprocessing spawn).

Each worker is one "replica": its own interpreter, its own engine and connection pool on the
shared database. It connects first, then waits on the barrier so that all replicas issue their
statements together, and reports plain values back through the queue.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from types import SimpleNamespace
from typing import Any

from forge.entitlements.resolve import Entitlement
from forge.errors import ForgeError
from forge.identity.caller import Caller
from forge.plans.catalog import Plan
from forge.quotas.limiter import QuotaExceeded, Taken, take
from forge.services.spawn.answers import AnswerBook
from forge.services.spawn.spawning import SpawnAnswer, _reserve
from forge.store import Database, idempotency
from forge.store.consumed_tokens import SqlReplayStore

BARRIER_TIMEOUT_S = 120
TENANT, SUBJECT = "acme", "alice"


class WorkerCrashed(Exception):
    """A replica raised instead of answering; carries its traceback."""


def entry(target: Callable[..., Any], *args: Any) -> None:
    """Process target: run `target`, sending its report, or its traceback, to the queue."""
    out: Queue[Any] = args[-1]
    try:
        target(*args)
    except BaseException:  # the parent must hear about any failure, not wait for a report
        barrier: Barrier = args[-2]
        barrier.abort()  # release the other replicas instead of leaving them at the barrier
        out.put(WorkerCrashed(traceback.format_exc()))


def race_plan(concurrent: int) -> Plan:
    """A plan whose only binding limit is `concurrent` labs per subject."""
    return Plan(name="RACE", tracks=("netplus",), tiers=("basic",), spawns_per_minute=10_000,
                tenant_spawns_per_minute=100_000, concurrent=concurrent,
                tenant_concurrent=10_000, max_lab_minutes=60, retention_days=30)


def _connect(url: str) -> Database:
    db = Database(url)
    db.ping()  # the connection exists before the barrier: the race is the statements only
    return db


def consume_jtis(url: str, jtis: list[str], barrier: Barrier, out: Queue[Any]) -> None:
    """Try to consume every jti; report the ones this replica won."""
    db = _connect(url)
    store = SqlReplayStore(db)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    barrier.wait(BARRIER_TIMEOUT_S)
    out.put([jti for jti in jtis if store.consume(jti, "SAT", expires)])
    db.dispose()


def _spawn_once(state: Any, request_id: str, plan: Plan, index: int) -> tuple[str, Any]:
    """One pass of the spawn service's reservation transaction for `request_id`."""
    ent = Entitlement(TENANT, SUBJECT, plan, "store", 30)
    key = idempotency.record_key(TENANT, SUBJECT, request_id)
    try:
        got = _reserve(state, request_id=request_id, key=key, digest="fp-" + request_id,
                       caller=Caller(TENANT, SUBJECT, "api_key"), ent=ent, track="netplus",
                       template_id="lab-netplus", scenario_id=f"scn-{index:02d}{request_id[-14:]}",
                       sat_jti=f"sat-{index}-{request_id}", et_jti=f"et-{index}-{request_id}")
    except ForgeError as exc:
        return "error", (exc.status, exc.code)
    if isinstance(got, SpawnAnswer):
        return "answer", (got.status, got.body)
    assert isinstance(got, Taken)
    body = {"scenario_id": got.scenario_id, "request_id": request_id}
    idempotency.complete(state.ctx.db, key, 201, body)
    return "created", (201, body)


def same_request_id(url: str, request_ids: list[str], index: int, barrier: Barrier,
                    out: Queue[Any]) -> None:
    """For each request id: all replicas reserve at once, then (after everyone has answered,
    so the winner has stored its answer) each asks again; both rounds are reported."""
    db = _connect(url)
    # What `_reserve` reads of the spawn state: the store, the pending timeout (default) and
    # the answers waiting to be stored (none here: each answer is stored below, at once).
    state = SimpleNamespace(ctx=SimpleNamespace(db=db), answers=AnswerBook(db),
                            settings=SimpleNamespace(spawn_pending_timeout_s=30.0))
    plan = race_plan(concurrent=1000)
    results = []
    for request_id in request_ids:
        barrier.wait(BARRIER_TIMEOUT_S)
        first = _spawn_once(state, request_id, plan, index)
        barrier.wait(BARRIER_TIMEOUT_S)
        again = _spawn_once(state, request_id, plan, index)
        results.append((request_id, first, again))
    out.put(results)
    db.dispose()


def take_slots(url: str, attempts: int, limit: int, index: int, barrier: Barrier,
               out: Queue[Any]) -> None:
    """Try `attempts` times to take a lab slot under a per-subject limit; report the wins."""
    db = _connect(url)
    plan = race_plan(concurrent=limit)
    won, refused = [], 0
    barrier.wait(BARRIER_TIMEOUT_S)
    for n in range(attempts):
        scenario_id = f"scn-p{index}-{n:04d}"
        try:
            with db.session() as sess:
                take(sess, scenario_id=scenario_id, tenant_id=TENANT, subject=SUBJECT,
                     plan=plan, now=datetime.now(UTC))
        except QuotaExceeded:
            refused += 1
            continue
        won.append(scenario_id)
    out.put((won, refused))
    db.dispose()


def _in_rounds(url: str, rounds: int, barrier: Barrier,
               one: Callable[[Database, int], Any]) -> list[Any]:
    """Run `one(db, round)` `rounds` times, every round started by all replicas together
    (the race is per round); the results, in round order."""
    db = _connect(url)
    try:
        got = []
        for n in range(rounds):
            barrier.wait(BARRIER_TIMEOUT_S)
            got.append(one(db, n))
        return got
    finally:
        db.dispose()


def take_attempts(url: str, assignment_id: str, rounds: int, allowed: int, same_request: bool,
                  index: int, barrier: Barrier, out: Queue[Any]) -> None:
    """For each round's learner (`allowed` attempts), all replicas at once take an attempt,
    with one request id per replica or (`same_request`) one retried request id for all;
    report what each round gave this replica: (round, attempt number or None, taken here)."""
    from forge.classroom.attempts import take_attempt

    def one(db: Database, n: int) -> tuple[int, int | None, bool]:
        request_id = f"req-r{n}" + ("" if same_request else f"-p{index}")
        taken = take_attempt(db, assignment_id, f"learner-{n}", request_id, allowed)
        return (n, None, False) if taken is None else (n, *taken)

    out.put(_in_rounds(url, rounds, barrier, one))


def replace_keys(url: str, rounds: int, index: int, barrier: Barrier, out: Queue[Any]) -> None:
    """For each round's learner, all replicas at once ask for a new sign-in key."""
    from forge.identity.apikeys import replace_api_key

    out.put(_in_rounds(url, rounds, barrier,
                       lambda db, n: replace_api_key(db, TENANT, f"keyed-{n}").key_id))


def migrate(url: str, barrier: Barrier, out: Queue[Any]) -> None:
    """Run the migrations, as every service does at start; report the schema version seen."""
    from sqlalchemy import text

    from forge.store import upgrade

    db = _connect(url)
    barrier.wait(BARRIER_TIMEOUT_S)
    upgrade(url)
    with db.read() as sess:
        out.put(sess.scalar(text("SELECT version_num FROM alembic_version")))
    db.dispose()


def grant_plan(url: str, rounds: int, index: int, barrier: Barrier, out: Queue[Any]) -> None:
    """For each round's learner, all replicas at once grant them a plan."""
    from forge.entitlements.grants import grant

    out.put(_in_rounds(url, rounds, barrier, lambda db, n: grant(
        db, TENANT, "PRO" if index % 2 else "FREE", f"granted-{n}")))


def fail_event(url: str, rounds: int, index: int, barrier: Barrier, out: Queue[Any]) -> None:
    """For each round's message, all replicas at once dead-letter it."""
    from forge.store.failed_events import record_failed_event

    out.put(_in_rounds(url, rounds, barrier, lambda db, n: record_failed_event(
        db, consumer="race", subject="forge.spawn.requested", msg_id=f"msg-{n}",
        payload="{}", error=f"replica {index}")))


def enrol_list(url: str, cohort_id: str, rounds: int, index: int, barrier: Barrier,
               out: Queue[Any]) -> None:
    """For each round, all replicas at once enrol the same two learners (CSV); report the
    number each call said it newly enrolled."""
    from forge.classroom.cohorts import Manager, enrol_subjects

    who = Manager(TENANT, "teacher", "operator")
    out.put(_in_rounds(url, rounds, barrier, lambda db, n: enrol_subjects(
        db, who, cohort_id, [f"pupil-{n}-a", f"pupil-{n}-b"]).added))
