"""Attack (or accident): a lab node whose wall clock is skewed.

Before: a node was judged lost, and its id could be taken over, by comparing the
`heartbeat_at` its own clock wrote with the reader's clock. A live node whose clock ran
behind by more than FORGE_NODE_GRACE_S had its running labs failed by the lease holder, and
by more than three heartbeats a second process could take over its id; a dead node whose
clock ran ahead was never judged lost (its labs stayed "running" forever).
After: a node is judged by whether its record keeps changing (revision), timed on the
reader's monotonic clock; the record's timestamp is trusted only for a takeover on the
machine that wrote it, under the same kernel boot (the same clock).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from forge.bus import NatsServer
from forge.bus.dial import connect
from forge.bus.nodes import BOOT_ID, NodeIdInUse, NodeRecord, NodeRegistry

GRACE_S = 3.0  # a beat every 0.2 s: a late beat on a loaded machine is not a loss
BEAT_S = 0.2


def _record(node_id: str, instance: str, skew_s: float, boot_id: str = "") -> NodeRecord:
    now = time.time() + skew_s
    return NodeRecord(node_id=node_id, url="http://127.0.0.1:9", capacity_labs=1,
                      capacity_memory_mb=512, started_at=now, heartbeat_at=now,
                      instance=instance, boot_id=boot_id)


async def _scenario(nats: NatsServer) -> None:
    nc = await connect(nats.url, "skew", credentials=nats.credentials("orchestrator"))
    try:
        live = NodeRegistry(nc.jetstream, replicas=1, grace_s=GRACE_S)
        # A live node n2 whose clock is an hour behind, heartbeating as a node does.
        revision = await live.claim(_record("n2", "n2-live", -3600), heartbeat_s=BEAT_S)

        async def beat() -> None:
            nonlocal revision
            while True:
                await asyncio.sleep(BEAT_S)
                revision = await live.beat(_record("n2", "n2-live", -3600), revision)

        beating = asyncio.create_task(beat())
        try:
            # The lease holder watches it for more than two grace periods: never lost.
            judge = NodeRegistry(nc.jetstream, replicas=1, grace_s=GRACE_S)
            watched_until = time.monotonic() + 2.5 * GRACE_S
            while time.monotonic() < watched_until:
                assert await judge.alive("n2"), "a live node with a slow clock judged lost"
                await asyncio.sleep(BEAT_S / 2)
            # A second process under its id is refused, however old its timestamp looks.
            rival = NodeRegistry(nc.jetstream, replicas=1, grace_s=GRACE_S)
            with pytest.raises(NodeIdInUse):
                # It watches the record for three of its beats (3 s): the live node's
                # beats, 0.2 s apart, must be seen moving even on a loaded machine.
                await rival.claim(_record("n2", "rival", 0), heartbeat_s=1.0)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)

        # A node whose clock runs an hour ahead writes once and dies: lost once its record
        # has stood still for the grace period, and its id can then be taken over.
        await live.claim(_record("n3", "n3-dead", 3600), heartbeat_s=BEAT_S)
        judge = NodeRegistry(nc.jetstream, replicas=1, grace_s=GRACE_S)
        assert await judge.alive("n3")  # first seen now: fresh
        give_up = time.monotonic() + 10 * GRACE_S
        while await judge.alive("n3"):
            assert time.monotonic() < give_up, "a dead node with a fast clock never lost"
            await asyncio.sleep(BEAT_S)
        successor = NodeRegistry(nc.jetstream, replicas=1, grace_s=GRACE_S)
        assert await successor.claim(_record("n3", "n3-new", 0), heartbeat_s=BEAT_S) > 0

        # A record written on this very machine since its boot (same clock) that is already
        # older than three heartbeats: a restart after a crash takes the id at once. The
        # same age from another machine's clock is not trusted: the restart must watch it.
        await live.claim(_record("n4", "n4-crashed", -600, BOOT_ID), heartbeat_s=BEAT_S)
        await live.claim(_record("n5", "n5-far", -600, "another-boot"), heartbeat_s=BEAT_S)
        restart = NodeRegistry(nc.jetstream, replicas=1, grace_s=GRACE_S)
        slow_beats = 30.0  # watching would take 3 x 30 s
        assert await asyncio.wait_for(restart.claim(
            _record("n4", "n4-new", 0, BOOT_ID), heartbeat_s=slow_beats), timeout=10) > 0
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(restart.claim(
                _record("n5", "n5-new", 0, BOOT_ID), heartbeat_s=slow_beats), timeout=1)
    finally:
        await nc.close()


def test_node_liveness_ignores_the_writers_clock(nats: NatsServer) -> None:
    asyncio.run(_scenario(nats))
