"""The JetStream artifact store keeps results as the filesystem store does: written once
(the same results again are a no-op, different ones a conflict), read back byte for byte,
listed for the leaderboard; nothing is readable until score.json, written last, is there.
Real nats-server with Forge's bus permissions (the store speaks as the scoreboard)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from nats import connect as nats_connect

from forge.bus import NatsServer, object_buckets
from forge.bus.connection import BusConnection
from forge.bus.errors import BusUnavailable
from forge.bus.object_buckets import put_object
from forge.bus.permissions import ARTIFACT_BUCKET
from forge.evidence.artifacts import Artifacts, ResultConflict
from forge.services.common.artifact_stores import ObjectStoreArtifactStore
from forge.services.scoreboard.leaderboard import ScoreIndex

from .sample import SCENARIO_ID, SIGNED_AT, build

PARTIAL = "scn-00000000000000ee"


async def test_results_in_the_object_store_are_written_once_and_read_back(
        nats: NatsServer, artifacts: Artifacts, tmp_path: Path) -> None:
    conn = BusConnection(nats.url, "test-artifacts", credentials=nats.credentials("scoreboard"))
    assert await conn.start(wait=5.0)
    store = ObjectStoreArtifactStore(conn)
    store.bind(asyncio.get_running_loop())
    try:
        assert await asyncio.to_thread(store.read, SCENARIO_ID) is None
        # A writer that died after the bundle, before score.json: no result yet.
        await put_object(conn.jetstream(), ARTIFACT_BUCKET, f"{PARTIAL}/evidence.tar.zst",
                         artifacts.bundle, replicas=1)
        assert await asyncio.to_thread(store.read, PARTIAL) is None
        written = await asyncio.to_thread(store.write, artifacts)
        assert written.created
        assert await asyncio.to_thread(store.read, SCENARIO_ID) == artifacts.files()
        # One file alone (a download), and nothing for a name that is not a result file's.
        for name, data in artifacts.files().items():
            assert await asyncio.to_thread(store.read_file, SCENARIO_ID, name) == data
        for name in ("evidence.tar.gz", "../score.json", "forge.db"):
            assert await asyncio.to_thread(store.read_file, SCENARIO_ID, name) is None
        again = await asyncio.to_thread(store.write, artifacts)
        assert not again.created and again.score_sha256 == written.score_sha256
        other = build(tmp_path / "other", signed_at=SIGNED_AT + timedelta(seconds=1))
        changed = replace(other, score_json=other.score_json.replace(b'"total"', b'"totaI"'))
        with pytest.raises(ResultConflict, match=r"score\.json"):
            await asyncio.to_thread(store.write, changed)
        assert await asyncio.to_thread(store.read, SCENARIO_ID) == artifacts.files()
        rows = await asyncio.to_thread(ScoreIndex(store).rows)
        assert [r.scenario_id for r in rows] == [SCENARIO_ID]  # not the partial one
    finally:
        await conn.close()


async def test_a_read_whose_chunks_never_come_answers_retry_and_leaves_no_subscription(
        nats: NatsServer, artifacts: Artifacts, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream failing over can leave a read's ordered consumer silent. The read then
    says BusUnavailable (the scoreboard's 503 + Retry-After) within the stall bound rather
    than holding the request for the whole call deadline, and removes its subscription.
    Shown here by purging the chunks of a stored score.json while its info stays."""
    monkeypatch.setattr(object_buckets, "CHUNK_STALL_S", 0.5)
    conn = BusConnection(nats.url, "test-artifacts", credentials=nats.credentials("scoreboard"))
    admin = await nats_connect(nats.admin_url)
    assert await conn.start(wait=5.0)
    store = ObjectStoreArtifactStore(conn)
    store.bind(asyncio.get_running_loop())
    try:
        await asyncio.to_thread(store.write, artifacts)
        js = admin.jetstream()
        info = await (await js.object_store(ARTIFACT_BUCKET)).get_info(
            f"{SCENARIO_ID}/score.json")
        subs_before = len(conn.client()._subs)
        await js.purge_stream(f"OBJ_{ARTIFACT_BUCKET}",
                              subject=f"$O.{ARTIFACT_BUCKET}.C.{info.nuid}")
        with pytest.raises(BusUnavailable):
            await asyncio.wait_for(asyncio.to_thread(store.read, SCENARIO_ID), 20)
        assert len(conn.client()._subs) == subs_before
    finally:
        await admin.close()
        await conn.close()


async def test_objects_of_many_chunks_and_of_none_read_back_byte_for_byte(
        nats: NatsServer) -> None:
    """The chunk reader (hashing as chunks come) returns objects of 0 bytes, one chunk,
    exactly one chunk, and several chunks exactly as stored."""
    conn = BusConnection(nats.url, "test-artifacts", credentials=nats.credentials("scoreboard"))
    assert await conn.start(wait=5.0)
    try:
        js = conn.jetstream()
        for size in (0, 1, 128 << 10, (3 << 17) + 7):
            data = os.urandom(size)
            name = f"{SCENARIO_ID}/blob-{size}"
            await put_object(js, ARTIFACT_BUCKET, name, data, replicas=1)
            assert await object_buckets.get_object(js, ARTIFACT_BUCKET, name,
                                                   max_bytes=1 << 20) == data
    finally:
        await conn.close()
