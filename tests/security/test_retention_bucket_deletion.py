"""Attacks on result deletion now that retention deletes from the JetStream buckets.

1. An investigation hold must keep a scenario's results (and its evidence pack) in the
   `forge-artifacts` / `forge-evidence` buckets through a retention run, byte for byte,
   while an unheld expired scenario in the same run is deleted (the control). Before this
   change `forge retention cleanup` could not see the bucket at all (no `store`).
2. A learner of another tenant must not be able to delete tenant A's results: no HTTP route
   of spawn_service, the scoreboard or the orchestrator deletes them when called with that
   learner's API key (every mutating route, A's scenario id in every path parameter), and
   on the bus neither spawn_service (learner-facing) nor a lab node (orchestrator) may
   delete an object of `forge-artifacts`, even with raw publishes: the new delete grant on
   `forge-evidence` is the scoreboard's alone.
Real nats-server with Forge's permissions, real apps, real SQL store (both engines).
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats as nats_client
import pytest
from fastapi.testclient import TestClient

from forge.bus import BusUnavailable, NatsServer
from forge.bus.connection import BusConnection
from forge.bus.evidence_pack import object_name
from forge.bus.object_buckets import delete_object, list_objects, put_object
from forge.bus.permissions import ARTIFACT_BUCKET, EVIDENCE_BUCKET
from forge.config import Settings, load_settings
from forge.identity.apikeys import create_api_key
from forge.retention import HoldStore, cleanup
from forge.services.common.artifact_stores import ObjectStoreArtifactStore
from forge.services.common.serving import ServiceName, build_service
from forge.services.scoreboard.scoring import Scorer
from forge.signing.keystore import SigningKeyring, keyring_dir
from forge.templates.registry import TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..scoreboard.conftest import build_completion, store_of
from ..services.conftest import prod_environ

NOW = datetime.now(UTC)


@pytest.fixture
async def board_store(nats: NatsServer) -> AsyncIterator[ObjectStoreArtifactStore]:
    conn = BusConnection(nats.url, "test-board", credentials=nats.credentials("scoreboard"))
    assert await conn.start(wait=5.0)
    store = ObjectStoreArtifactStore(conn)
    store.bind(asyncio.get_running_loop())
    yield store
    await conn.close()


def settings_for(tmp_path: Path, nats: NatsServer, db_url: str) -> Settings:
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_DB_URL=db_url, FORGE_ARTIFACT_STORE="jetstream"))
    SigningKeyring(keyring_dir(settings.storage_root, {})).ensure()
    return settings


async def expired_results(settings: Settings, store: ObjectStoreArtifactStore,
                          nats: NatsServer, count: int) -> list[str]:
    """`count` scenarios of tenant A, expired ten days ago, each with an evidence pack."""
    scorer = Scorer(settings, TemplateRegistry.load(TEMPLATE_FIXTURES), artifacts=store,
                    db=store_of(settings))
    node = await nats_client.connect(nats.url, user=nats.credentials("orchestrator").user,
                                     password=nats.credentials("orchestrator").password,
                                     inbox_prefix=nats.credentials("orchestrator").inbox_prefix)
    ids = []
    try:
        for _ in range(count):
            done = build_completion(settings, tenant="tenant-a", subject="alice",
                                    completed_at=NOW - timedelta(days=40), retention_days=30)
            await asyncio.to_thread(scorer.score, done.event)
            pack = f"answers of {done.scenario_id}".encode()
            await put_object(node.jetstream(), EVIDENCE_BUCKET,
                             object_name(done.scenario_id, pack), pack, replicas=1)
            ids.append(done.scenario_id)
    finally:
        await node.close()
    return ids


@pytest.mark.usefixtures("sqlite_only_store")
async def test_a_hold_keeps_results_in_the_bucket_through_retention(
        nats: NatsServer, board_store: ObjectStoreArtifactStore, tmp_path: Path) -> None:
    # Retention does not touch the SQL store, so one engine is enough here.
    settings = settings_for(tmp_path, nats, f"sqlite:///{tmp_path / 'forge.db'}")
    held, control = await expired_results(settings, board_store, nats, 2)
    before = await asyncio.to_thread(board_store.read, held)
    HoldStore(settings.storage_root).hold(held, "incident 42")

    report = await asyncio.to_thread(cleanup, settings.storage_root, store=board_store)
    assert {(i.scenario_id, i.action) for i in report.items} == {(held, "held"),
                                                                  (control, "deleted")}
    assert await asyncio.to_thread(board_store.read, held) == before
    assert await asyncio.to_thread(board_store.read, control) is None
    packs = await list_objects(board_store.connection.jetstream(), EVIDENCE_BUCKET)
    assert [p.split(".")[0] for p in packs] == [held]


def _path_for(path: str, scenario_id: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: scenario_id if "scenario" in m.group(0) else "1",
                  path)


async def test_no_learner_api_or_service_identity_deletes_another_tenants_results(
        nats: NatsServer, board_store: ObjectStoreArtifactStore, tmp_path: Path,
        db_url: str) -> None:
    settings = settings_for(tmp_path, nats, db_url)
    [victim] = await expired_results(settings, board_store, nats, 1)
    js = board_store.connection.jetstream()
    artifacts_before = await list_objects(js, ARTIFACT_BUCKET)
    results_before = await asyncio.to_thread(board_store.read, victim)

    def call_every_mutating_route() -> list[tuple[str, str, int]]:
        answers = []
        for name in (ServiceName.spawn, ServiceName.scoreboard, ServiceName.orchestrator):
            app = build_service(name, settings)
            with TestClient(app) as client:
                if name is ServiceName.spawn:
                    key = create_api_key(app.state.spawn.ctx.db, "tenant-b", "mallory")
                    learner = {"x-api-key": key.plaintext,
                               "Authorization": f"Bearer {key.plaintext}"}
                # Every route the service publishes (its OpenAPI document lists them all).
                for path, operations in app.openapi()["paths"].items():
                    for method in sorted(m.upper() for m in operations
                                         if m.upper() in ("POST", "PUT", "PATCH", "DELETE")):
                        resp = client.request(method, _path_for(path, victim),
                                              headers=learner, json={})
                        answers.append((method, path, resp.status_code))
        return answers

    answers = await asyncio.to_thread(call_every_mutating_route)
    assert any(method == "DELETE" for method, _, _ in answers)  # the routes were reached
    touching = [a for a in answers if "{scenario_id}" in a[1] and a[2] < 400]
    assert touching == [], touching
    assert await list_objects(js, ARTIFACT_BUCKET) == artifacts_before
    assert await asyncio.to_thread(board_store.read, victim) == results_before

    # The bus: spawn_service and a lab node cannot delete (or purge) A's result objects.
    for identity in ("spawn", "orchestrator"):
        errors: list[str] = []
        creds = nats.credentials(identity)

        async def on_error(exc: Exception, sink: list[str] = errors) -> None:
            sink.append(str(exc).lower())

        client = await nats_client.connect(nats.url, user=creds.user, password=creds.password,
                                           inbox_prefix=creds.inbox_prefix, error_cb=on_error,
                                           allow_reconnect=False)
        try:
            with pytest.raises(BusUnavailable):
                await delete_object(client.jetstream(timeout=1), ARTIFACT_BUCKET,
                                    f"{victim}/score.json")
            meta = base64.urlsafe_b64encode(f"{victim}/score.json".encode()).decode()
            await client.publish(f"$O.{ARTIFACT_BUCKET}.M.{meta}", b'{"deleted":true}')
            await client.publish(f"$JS.API.STREAM.PURGE.OBJ_{ARTIFACT_BUCKET}", b"{}")
            await client.flush(timeout=5)
            await asyncio.sleep(0.2)  # the -ERR lines arrive after the round trip
            for subject in (f"$o.{ARTIFACT_BUCKET}.m.{meta.lower()}",
                            f"$js.api.stream.purge.obj_{ARTIFACT_BUCKET}".lower()):
                needle = f'permissions violation for publish to "{subject}"'
                assert any(needle in e for e in errors), (identity, needle, errors)
        finally:
            await client.close()
    assert await list_objects(js, ARTIFACT_BUCKET) == artifacts_before
    assert await asyncio.to_thread(board_store.read, victim) == results_before
