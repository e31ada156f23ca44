"""Retention on a multi-machine install (`FORGE_ARTIFACT_STORE=jetstream`): expired results
leave the `forge-artifacts` bucket and their evidence packs leave `forge-evidence`; held and
not-yet-expired ones stay; every deletion is in the global audit log; a delete cut short is
finished by the next run; `forge retention run` does it from the operator's shell.
Real nats-server with Forge's bus permissions, real scorer and signing keys. The SQL store is
not touched by retention, so these tests do not run per database engine."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forge.audit.log import global_log
from forge.bus import NatsServer
from forge.bus.connection import BusConnection
from forge.bus.evidence_pack import object_name
from forge.bus.object_buckets import delete_object, list_objects, put_object
from forge.bus.permissions import ARTIFACT_BUCKET, EVIDENCE_BUCKET
from forge.config import Settings, load_settings
from forge.retention import HoldStore, cleanup
from forge.retention.cleanup import INTERRUPTED
from forge.services.common.artifact_stores import ObjectStoreArtifactStore
from forge.services.scoreboard.scoring import Scorer
from forge.signing.keystore import SigningKeyring, keyring_dir
from forge.templates.registry import TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..services.conftest import prod_environ
from .conftest import PYTHON, build_completion, store_of

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store

NOW = datetime.now(UTC)
# name -> (completed days ago, retention_days)
PLAN = {"expired": (40, 30), "interrupted": (40, 30), "held": (40, 30), "long": (40, 90)}


def environ(tmp_path: Path, nats: NatsServer) -> dict[str, str]:
    return prod_environ(tmp_path / "storage", **nats.client_env(),
                        FORGE_DB_URL=f"sqlite:///{tmp_path / 'forge.db'}",
                        FORGE_ARTIFACT_STORE="jetstream")


@pytest.fixture
async def store(nats: NatsServer) -> AsyncIterator[ObjectStoreArtifactStore]:
    conn = BusConnection(nats.url, "test-retention", credentials=nats.credentials("scoreboard"))
    assert await conn.start(wait=5.0)
    artifacts = ObjectStoreArtifactStore(conn)
    artifacts.bind(asyncio.get_running_loop())
    yield artifacts
    await conn.close()


async def score_into_bucket(settings: Settings, store: ObjectStoreArtifactStore,
                            nats: NatsServer, names: list[str]) -> dict[str, str]:
    """Score one scenario per name into the bucket; a lab node stores an evidence pack each."""
    SigningKeyring(keyring_dir(settings.storage_root, {})).ensure()
    scorer = Scorer(settings, TemplateRegistry.load(TEMPLATE_FIXTURES), artifacts=store,
                    db=store_of(settings))
    node = BusConnection(nats.url, "test-node", credentials=nats.credentials("orchestrator"))
    assert await node.start(wait=5.0)
    ids: dict[str, str] = {}
    try:
        for name in names:
            days_ago, days = PLAN[name]
            done = build_completion(settings, completed_at=NOW - timedelta(days=days_ago),
                                    retention_days=days)
            await asyncio.to_thread(scorer.score, done.event)
            pack = f"pack of {done.scenario_id}".encode()
            await put_object(node.jetstream(), EVIDENCE_BUCKET,
                             object_name(done.scenario_id, pack), pack, replicas=1)
            ids[name] = done.scenario_id
    finally:
        await node.close()
    return ids


def objects_of(names: list[str], sid: str) -> list[str]:
    return sorted(n for n in names if n.startswith(sid))


async def test_retention_deletes_expired_results_and_evidence_from_the_buckets(
        nats: NatsServer, store: ObjectStoreArtifactStore, tmp_path: Path) -> None:
    settings = load_settings(environ(tmp_path, nats))
    root = settings.storage_root
    ids = await score_into_bucket(settings, store, nats, list(PLAN))
    js = store.connection.jetstream()
    before = await list_objects(js, ARTIFACT_BUCKET)
    assert all(len(objects_of(before, sid)) == 4 for sid in ids.values())
    assert not (root / "scenarios" / ids["expired"] / "results").exists()  # bucket only
    HoldStore(root).hold(ids["held"], "case 9")
    # A run that died mid-delete: marker left, score.json gone, the other objects still there.
    cut = ids["interrupted"]
    await put_object(js, ARTIFACT_BUCKET, f"{cut}/.deleting", b"x", replicas=1)
    assert await delete_object(js, ARTIFACT_BUCKET, f"{cut}/score.json")
    assert await asyncio.to_thread(store.read, cut) is None

    pre_dry = await list_objects(js, ARTIFACT_BUCKET)
    dry = await asyncio.to_thread(cleanup, root, dry_run=True, store=store)
    assert dry.count("would_delete") == 2 and dry.count("held") == 1
    assert await list_objects(js, ARTIFACT_BUCKET) == pre_dry  # a dry run deletes nothing
    assert len(await list_objects(js, EVIDENCE_BUCKET)) == 4

    report = await asyncio.to_thread(cleanup, root, store=store)
    actions = {i.scenario_id: (i.action, i.reason) for i in report.items}
    assert actions == {ids["expired"]: ("deleted", ""), cut: ("deleted", INTERRUPTED),
                       ids["held"]: ("held", "investigation hold"),
                       ids["long"]: ("kept", "")}
    assert report.ok
    left = await list_objects(js, ARTIFACT_BUCKET)
    assert objects_of(left, ids["expired"]) == [] and objects_of(left, cut) == []
    assert len(objects_of(left, ids["held"])) == 4 and len(objects_of(left, ids["long"])) == 4
    packs = await list_objects(js, EVIDENCE_BUCKET)
    assert [p.split(".")[0] for p in packs] == sorted([ids["held"], ids["long"]])
    assert await asyncio.to_thread(store.read, ids["held"]) is not None
    audit = global_log(root).read_bytes().decode()
    assert audit.count('"event":"retention.deleted"') == 2
    assert ids["expired"] in audit and cut in audit

    # Idempotent: nothing more to delete; released, the held scenario goes next run.
    assert (await asyncio.to_thread(cleanup, root, store=store)).count("deleted") == 0
    assert HoldStore(root).release(ids["held"])
    again = await asyncio.to_thread(cleanup, root, store=store)
    assert [(i.scenario_id, i.action) for i in again.items if i.action != "kept"] == [
        (ids["held"], "deleted")]
    assert objects_of(await list_objects(js, ARTIFACT_BUCKET), ids["held"]) == []
    assert [p.split(".")[0] for p in await list_objects(js, EVIDENCE_BUCKET)] == [ids["long"]]


async def test_retention_run_cli_on_a_jetstream_install(
        nats: NatsServer, store: ObjectStoreArtifactStore, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_HMAC_SECRET")}
    env.update(environ(tmp_path, nats))
    settings = load_settings(env)
    ids = await score_into_bucket(settings, store, nats, ["expired", "held"])

    def forge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PYTHON), "-m", "forge", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=False)

    assert (await asyncio.to_thread(forge, "retention", "hold", ids["held"])).returncode == 0
    run = await asyncio.to_thread(forge, "retention", "run", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["counts"]["deleted"], report["counts"]["held"]) == (1, 1)
    js = store.connection.jetstream()
    left = await list_objects(js, ARTIFACT_BUCKET)
    assert objects_of(left, ids["expired"]) == [] and len(objects_of(left, ids["held"])) == 4
    assert [p.split(".")[0] for p in await list_objects(js, EVIDENCE_BUCKET)] == [ids["held"]]
    gone = await asyncio.to_thread(forge, "artifacts", "fetch", ids["expired"])
    assert gone.returncode == 1 and "removed by retention" in gone.stderr
    assert '"event":"retention.deleted"' in global_log(settings.storage_root).read_bytes().decode()
