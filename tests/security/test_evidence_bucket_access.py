"""Attack: spawn_service (learner-facing) reading or rewriting evidence in the Object Store.

Evidence packs carry a lab's full check outputs, i.e. its answers; result artifacts carry the
verdicts. With no disk shared between services they live in JetStream Object Store buckets,
and the server itself grants each bucket only to the identities that need it: a lab node
(orchestrator) writes evidence, the scoreboard reads it and writes artifacts. spawn_service
gets neither: it cannot look an object up, stream its chunks, publish chunks or metadata,
or create the bucket. Before this change there were no bucket grants at all (no service
could use a bucket). Real nats-server with the configuration Forge generates.
"""

from __future__ import annotations

import asyncio

import nats as nats_client
import pytest
from nats.aio.client import Client

from forge.bus import BusUnavailable, NatsServer
from forge.bus.object_buckets import get_object, put_object
from forge.bus.permissions import ARTIFACT_BUCKET, EVIDENCE_BUCKET

SECRET_OUTPUT = b"token QmFzZTY0c2VjcmV0dG9r\n" * 100


async def login(server: NatsServer, identity: str, errors: list[str]) -> Client:
    creds = server.credentials(identity)

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    return await nats_client.connect(server.url, user=creds.user, password=creds.password,
                                     inbox_prefix=creds.inbox_prefix, error_cb=on_error,
                                     allow_reconnect=False)


async def test_spawn_service_cannot_read_or_write_the_evidence_bucket(
        nats: NatsServer) -> None:
    errors: list[str] = []
    node = await login(nats, "orchestrator", errors)
    board = await login(nats, "scoreboard", errors)
    spawn = await login(nats, "spawn", errors)
    try:
        # The control: the node stores a pack, the scoreboard reads it back.
        await put_object(node.jetstream(), EVIDENCE_BUCKET, "pack-1", SECRET_OUTPUT, replicas=1)
        assert await get_object(board.jetstream(), EVIDENCE_BUCKET, "pack-1",
                                max_bytes=1 << 20) == SECRET_OUTPUT

        js = spawn.jetstream(timeout=1)
        with pytest.raises(BusUnavailable):
            await get_object(js, EVIDENCE_BUCKET, "pack-1", max_bytes=1 << 20)
        with pytest.raises(BusUnavailable):
            await put_object(js, EVIDENCE_BUCKET, "pack-1", b"forged", replicas=1)
        with pytest.raises(BusUnavailable):
            await put_object(js, ARTIFACT_BUCKET, "scn-0000000000000001/score.json", b"{}",
                             replicas=1)
        # Raw attempts, each named by the server as a violation.
        await spawn.publish(f"$O.{EVIDENCE_BUCKET}.C.forged", b"forged chunk")
        await spawn.subscribe(f"$O.{EVIDENCE_BUCKET}.>")
        await spawn.publish(f"$JS.API.DIRECT.GET.OBJ_{EVIDENCE_BUCKET}", b"{}")
        await spawn.flush(timeout=5)
        await asyncio.sleep(0.2)  # the -ERR lines arrive after the round trip
        for action, subject in (
                ("publish", f"$js.api.stream.info.obj_{EVIDENCE_BUCKET}"),
                ("publish", f"$o.{EVIDENCE_BUCKET}.c.forged"),
                ("subscription", f"$o.{EVIDENCE_BUCKET}.>"),
                ("publish", f"$js.api.direct.get.obj_{EVIDENCE_BUCKET}")):
            needle = f'permissions violation for {action} to "{subject}"'
            assert any(needle in e for e in errors), (needle, errors)

        # The scoreboard may read evidence but not rewrite it.
        with pytest.raises(BusUnavailable):
            await put_object(board.jetstream(timeout=1), EVIDENCE_BUCKET, "pack-1", b"forged",
                             replicas=1)
        assert await get_object(board.jetstream(), EVIDENCE_BUCKET, "pack-1",
                                max_bytes=1 << 20) == SECRET_OUTPUT
    finally:
        for client in (node, board, spawn):
            await client.close()
