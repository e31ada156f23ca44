"""Attack: squat or probe another tenant's spawn request ids (Idempotency keys).

Request ids were kept under the bare id for everyone: a learner of tenant B who sent an id
tenant A had used within 24 h got 409 request_id_conflict (telling B that someone used
it), and an id B spent first locked A out of it (A's spawn with it answered 409 for a day).
A request id is now the caller's own (kept under tenant, subject and id): the same id
from another learner is a request of theirs, never an answer, a conflict or a lockout.
Records written under the bare id by an older release still replay for their own caller.
"""

from __future__ import annotations

from datetime import UTC, datetime

from forge.entitlements.grants import grant
from forge.store import idempotency
from forge.store.models import Scenario

from ..spawn.conftest import SpawnEnv, make_spawn, spawn_env  # noqa: F401  (fixtures)
from ..spawn.test_spawn_api import count, key_for, spawn


def test_another_tenants_request_id_is_neither_an_oracle_nor_a_lockout(
        spawn_env: SpawnEnv) -> None:  # noqa: F811
    db = spawn_env.state.ctx.db
    grant(db, "tenant-a", "PRO")
    grant(db, "tenant-b", "PRO")
    alice, mallory = key_for(spawn_env, "tenant-a", "alice"), key_for(spawn_env, "tenant-b", "mal")
    with spawn_env.client() as client:
        squat = spawn(client, mallory, request_id="weekly-lab-alice")  # spent first by B
        mine = spawn(client, alice, request_id="weekly-lab-alice")
        again = spawn(client, alice, request_id="weekly-lab-alice")
        theirs_again = spawn(client, mallory, request_id="weekly-lab-alice")
    assert squat.status_code == 201 and mine.status_code == 201, (squat.text, mine.text)
    assert mine.json()["scenario_id"] != squat.json()["scenario_id"]
    assert again.status_code == 200 and again.json() == mine.json()
    assert theirs_again.status_code == 200 and theirs_again.json() == squat.json()
    with db.read() as sess:
        owners = {(r.tenant_id, r.subject) for r in sess.query(Scenario)}
    assert owners == {("tenant-a", "alice"), ("tenant-b", "mal")}


def test_an_answer_kept_under_the_bare_id_replays_for_its_caller_only(
        spawn_env: SpawnEnv) -> None:  # noqa: F811
    db = spawn_env.state.ctx.db
    grant(db, "acme", "PRO")
    alice, bob = key_for(spawn_env, "acme", "alice"), key_for(spawn_env, "acme", "bob")
    old_answer = {"request_id": "before-upgrade-1", "scenario_id": "scn-00000000000000aa",
                  "status": "pending"}
    with db.session() as sess:  # as the release before this one stored alice's answer
        idempotency.reserve(sess, "before-upgrade-1",
                            idempotency.fingerprint("acme", "alice", "netplus"),
                            datetime.now(UTC))
        idempotency.complete_many(sess, [("before-upgrade-1", 201, old_answer)])
    with spawn_env.client() as client:
        replay = spawn(client, alice, request_id="before-upgrade-1")
        other = spawn(client, bob, request_id="before-upgrade-1")
    assert replay.status_code == 200 and replay.json() == old_answer
    assert other.status_code == 201 and other.json()["scenario_id"] != old_answer["scenario_id"]
    assert count(spawn_env, Scenario) == 1  # bob's; alice's retry started nothing


def test_a_request_still_in_flight_under_the_bare_id_is_not_started_twice(
        spawn_env: SpawnEnv) -> None:  # noqa: F811
    # A request of the release before the upgrade, still being answered when its learner
    # retries on the new release: the retry waits (409 request_in_progress), as it did
    # before the upgrade, instead of starting a second lab; another learner's same id is
    # their own request.
    db = spawn_env.state.ctx.db
    grant(db, "acme", "PRO")
    alice, bob = key_for(spawn_env, "acme", "alice"), key_for(spawn_env, "acme", "bob")
    with db.session() as sess:
        idempotency.reserve(sess, "before-upgrade-2",
                            idempotency.fingerprint("acme", "alice", "netplus"),
                            datetime.now(UTC))
    with spawn_env.client() as client:
        retry = spawn(client, alice, request_id="before-upgrade-2")
        other = spawn(client, bob, request_id="before-upgrade-2")
    assert retry.status_code == 409 and retry.json()["error"] == "request_in_progress"
    assert other.status_code == 201, other.text
    assert count(spawn_env, Scenario) == 1  # bob's only
