"""JetStream round trips of Object Store writes and of a retention run, counted on the wire.

An admin subscriber on `$JS.API.>` sees every JetStream API request of the account (real
nats-server). Before: `put_object` created/scaled its bucket (three stream requests) on
every write, and a retention run listed `forge-artifacts` twice and the whole
`forge-evidence` bucket once per deleted scenario (O(N^2) for N expired scenarios). After:
a bucket is checked once per connection, and a run lists each bucket once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats as nats_client
import pytest

from forge.bus import NatsServer
from forge.bus.dial import connect
from forge.bus.object_buckets import list_objects, put_object
from forge.bus.permissions import ARTIFACT_BUCKET, EVIDENCE_BUCKET
from forge.config import load_settings
from forge.retention import cleanup
from forge.services.common.artifact_stores import ObjectStoreArtifactStore

from .test_retention_jetstream import environ, score_into_bucket, store  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


@asynccontextmanager
async def api_requests(nats: NatsServer) -> AsyncIterator[list[tuple[str, bytes]]]:
    """Every JetStream API request (subject, body) made while the block runs."""
    seen: list[tuple[str, bytes]] = []
    admin = await nats_client.connect(nats.admin_url)

    async def note(msg: nats_client.aio.msg.Msg) -> None:
        seen.append((msg.subject, msg.data))

    sub = await admin.subscribe("$JS.API.>", cb=note)
    await admin.flush()
    try:
        yield seen
    finally:
        await admin.flush()
        await asyncio.sleep(0)  # deliver what the flush brought in
        await sub.unsubscribe()
        await admin.close()


def _stream_requests(seen: list[tuple[str, bytes]], bucket: str) -> list[str]:
    return [s for s, _ in seen if s.split(".")[2] == "STREAM"
            and s.split(".")[3] in ("INFO", "CREATE", "UPDATE") and s.endswith(f"OBJ_{bucket}")]


def _listings(seen: list[tuple[str, bytes]], bucket: str) -> int:
    """Consumers created on the bucket's object metadata (`ObjectStore.list`)."""
    count = 0
    for subject, body in seen:
        if subject.startswith(f"$JS.API.CONSUMER.CREATE.OBJ_{bucket}"):
            config = json.loads(body or b"{}").get("config", {})
            if str(config.get("filter_subject", "")).endswith(".M.>"):
                count += 1
    return count


async def test_a_bucket_is_checked_once_per_connection(nats: NatsServer) -> None:
    nc = await connect(nats.url, "node", credentials=nats.credentials("orchestrator"))
    try:
        await put_object(nc.jetstream(), EVIDENCE_BUCKET, "scn-" + "1" * 16 + ".a", b"one",
                         replicas=1)
        async with api_requests(nats) as seen:
            for n in range(3):
                await put_object(nc.jetstream(), EVIDENCE_BUCKET, f"scn-{'2' * 16}.{n}",
                                 b"pack %d" % n, replicas=1)
        assert _stream_requests(seen, EVIDENCE_BUCKET) == []
        assert len(await list_objects(nc.jetstream(), EVIDENCE_BUCKET)) == 4
    finally:
        await nc.close()


async def test_a_retention_run_lists_each_bucket_once(
        nats: NatsServer, store: ObjectStoreArtifactStore,  # noqa: F811
        tmp_path: Path) -> None:
    settings = load_settings(environ(tmp_path, nats))
    ids = await score_into_bucket(settings, store, nats, ["expired", "long"])
    more = [await score_into_bucket(settings, store, nats, ["expired"]) for _ in range(2)]
    expired = {ids["expired"], *(m["expired"] for m in more)}
    async with api_requests(nats) as seen:
        report = await asyncio.to_thread(cleanup, settings.storage_root, store=store)
    assert report.ok and {i.scenario_id for i in report.items if i.action == "deleted"} \
        == expired
    assert _listings(seen, ARTIFACT_BUCKET) == 1
    assert _listings(seen, EVIDENCE_BUCKET) == 1
    packs = await list_objects(store.connection.jetstream(), EVIDENCE_BUCKET)
    assert [p.split(".")[0] for p in packs] == [ids["long"]]
