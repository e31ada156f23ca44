"""A disk that fills under nats-server (real server, its store on a tiny tmpfs): the stream
that failed a write stays broken once there is room again, while every client stays
connected. The services' readiness names JetStream meanwhile; `forge up`'s supervision
restarts the server once there is room (never while the disk is still full) and JetStream
and readiness work again."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from forge.bus.dial import connect
from forge.bus.errors import BusUnavailable
from forge.bus.permissions import ADMIN, BusAuth
from forge.bus.publisher import Publisher
from forge.bus.subjects import node_submit_subject
from forge.services.common.bus import jetstream_check
from forge.services.common.readiness import CheckFailed
from forge.stack.embedded_nats import EmbeddedNats
from forge.stack.supervisor import backoff_delay

from ..support.bus_readiness import nats_readiness, until_ready
from ..support.small_disk import Filler, fill_disk, small_tmpfs

pytestmark = pytest.mark.root  # mounts a tmpfs

SUBJECT = node_submit_subject("node-1")  # stream FORGE_NODES, as in the operator's drill


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 8 MiB tmpfs under tmp_path (root), unmounted at the end."""
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        yield disk


@pytest.fixture
def embedded(small_disk: Path) -> Iterator[EmbeddedNats]:
    """`forge up`'s embedded nats-server, its store on the small disk, stopped at the end."""
    nats = EmbeddedNats(small_disk, BusAuth.generate(), room_bytes=512 * 1024)  # a free port
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()


def as_spawn(nats: EmbeddedNats,
             scenario: Callable[[Publisher], Coroutine[Any, Any, None]]) -> None:
    """Run `scenario` with a connected publisher of spawn_service's identity."""
    async def run() -> None:
        publisher = Publisher(nats.url, credentials=nats.members[0].server.credentials("spawn"),
                              timeout=1.0, reconnect_wait=0.2)
        try:
            assert await publisher.start(wait=5.0)
            await scenario(publisher)
        finally:
            await publisher.close()
    asyncio.run(run())


async def publish(nats: EmbeddedNats, subject: str = SUBJECT, timeout: float = 1.0,
                  size: int = 2) -> str:
    """Publish once as admin over a new connection: "ok" or the error's name."""
    server = nats.members[0].server
    nc = await connect(nats.url, "disk-full-test", credentials=server.credentials(ADMIN),
                       timeout=3.0)
    try:
        await nc.jetstream().publish(subject, b"x" * size, timeout=timeout)
        return "ok"
    except Exception as exc:
        return type(exc).__name__
    finally:
        await nc.close()


def break_stream(nats: EmbeddedNats, disk: Path) -> Filler:
    """Fill the disk and publish, so the stream fails a write (ENOSPC); return the filler."""
    assert asyncio.run(publish(nats)) == "ok"
    filler = fill_disk(disk)
    probe = disk / "probe"
    with pytest.raises(OSError) as full:
        probe.write_bytes(b"\0" * 65536)
    assert full.value.errno == errno.ENOSPC
    assert asyncio.run(publish(nats, size=65536)) != "ok"
    return filler


def test_a_stream_broken_by_a_full_disk_is_restarted_once_there_is_room(
        small_disk: Path, embedded: EmbeddedNats) -> None:
    nats = embedded
    reports: list[str] = []
    member = nats.members[0]
    filler = break_stream(nats, small_disk)
    first_pid = member.server.pid
    first_port = member.server.port

    def poll(now: float) -> None:
        member.checked_at = None  # ask its health endpoint on every poll of the test
        nats.poll(now, backoff_delay, reports.append)

    # Disk still full: the trouble is seen and named, but no restart however long.
    for now in (0.0, 5.0, 10.0, 20.0, 60.0):
        poll(now)
    assert not member.ready
    assert member.trouble is not None and "write error" in member.trouble
    assert member.server.pid == first_pid and member.restarts == 0
    assert any("waiting for room" in r for r in reports), reports
    assert asyncio.run(publish(nats)) != "ok"  # nats-server does not heal by itself

    filler.remove()
    (small_disk / "probe").unlink(missing_ok=True)
    assert asyncio.run(publish(nats)) != "ok"  # room again, the stream still broken
    for now in (61.0, 66.0, 71.0):  # counted from when there is room: not restarted yet
        poll(now)
    assert any("room again" in r for r in reports), reports
    assert member.server.pid == first_pid and member.restarts == 0
    poll(76.0)
    assert any("JetStream not usable for 15s" in r and "restarting" in r for r in reports)
    poll(76.5)  # started again, on the same port and store
    assert member.server.running and member.server.pid != first_pid
    assert member.server.port == first_port
    assert any(f"restarted on port {first_port}" in r for r in reports), reports
    assert asyncio.run(publish(nats)) == "ok"
    poll(77.0)
    assert member.ready and member.trouble is None


def test_a_blip_is_never_restarted(embedded: EmbeddedNats) -> None:
    nats = embedded
    reports: list[str] = []
    member = nats.members[0]
    member.checked_at = None
    nats.poll(0.0, backoff_delay, reports.append)
    assert member.ready and not reports
    # Two failing checks over a long time, or many within a short one: no restart.
    nats._watch_jetstream(member, "write error (test)", 1.0, backoff_delay, reports.append)
    nats._watch_jetstream(member, "write error (test)", 100.0, backoff_delay, reports.append)
    nats._watch_jetstream(member, None, 101.0, backoff_delay, reports.append)
    for now in (200.0, 201.0, 202.0, 203.0):
        nats._watch_jetstream(member, "write error (test)", now, backoff_delay,
                              reports.append)
    assert member.restarts == 0 and member.server.running


def test_readiness_names_jetstream_until_the_server_is_restarted(
        small_disk: Path, embedded: EmbeddedNats) -> None:
    member = embedded.members[0]

    async def scenario(publisher: Publisher) -> None:
        ok, body = await nats_readiness(publisher)
        assert ok, body
        assert "JetStream answers (stream FORGE)" in body["checks"]["nats"]["detail"]

        filler = fill_disk(small_disk)
        with pytest.raises(BusUnavailable):
            await publisher.publish(SUBJECT, {"pad": "x" * 65536}, msg_id="full-1")
        filler.remove()  # room again: the stream stays broken, and readiness says so
        with pytest.raises(BusUnavailable):
            await publisher.publish(SUBJECT, {"pad": "x"}, msg_id="full-2")
        ok, body = await nats_readiness(publisher)
        assert not ok and body["failed"] == ["nats"]
        detail = body["checks"]["nats"]["detail"]
        assert "JetStream is not storing events" in detail and SUBJECT in detail
        assert publisher.connected  # what readiness used to report as all well
        # Not held for ever: with no failure for the forget window, it is forgotten (one
        # ack lost to a slow moment kept readiness red until a rare subject's next publish).
        publisher.forget_unconfirmed_s = 0.0
        assert publisher.unconfirmed() is None
        with pytest.raises(BusUnavailable):
            await publisher.publish(SUBJECT, {"pad": "x"}, msg_id="full-3")
        publisher.forget_unconfirmed_s = 60.0
        assert SUBJECT in (publisher.unconfirmed() or "")

        # forge up's supervision restarts nats-server; the client reconnects.
        for now in (0.0, 5.0, 10.0, 20.0, 21.0):  # restart at 20, start at 21
            member.checked_at = None
            await asyncio.to_thread(embedded.poll, now, backoff_delay, lambda _: None)
        assert member.restarts == 1 and member.server.running
        body = await until_ready(publisher, 15.0)
        assert body["status"] == "ready", body
        ack = await publisher.publish(SUBJECT, {"pad": "x"}, msg_id="after-1")
        assert ack.stream == "FORGE_NODES"

    as_spawn(embedded, scenario)


def test_readiness_fails_when_jetstream_does_not_answer(embedded: EmbeddedNats) -> None:
    async def scenario(publisher: Publisher) -> None:
        # Spawn may not ask about this stream: no answer, as from a disabled JetStream.
        with pytest.raises(CheckFailed, match="JetStream did not answer"):
            await jetstream_check(publisher, "NOT_A_FORGE_STREAM", timeout=0.5)

    as_spawn(embedded, scenario)
