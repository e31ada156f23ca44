"""Attack: speaking on, or listening to, the platform's NATS bus without being the right service.

Before issue 12 the bus had no authentication: any local process could subscribe to `forge.>`
(and read the lab answers inside `forge.scenario.completed`), publish a completion with every
check `passed: true`, or submit someone else's lab. Now every client must log in as one
service identity, and the server itself refuses what that identity may not publish or read.
Everything runs against a real nats-server with the configuration Forge generates.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats as nats_client
import pytest
from nats import errors as nats_errors
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from forge.bus import BusUnavailable, DurableConsumer, Event, NatsServer, Publisher
from forge.bus.dial import connect
from forge.bus.nats_binary import find_nats_server
from forge.bus.permissions import BusCredentials
from forge.bus.ports import free_port
from forge.bus.subjects import (
    DURABLE_SCOREBOARD_COMPLETED,
    DURABLE_SPAWN_LIFECYCLE,
    SCENARIO_COMPLETED,
    SCENARIO_ENDED,
    SCENARIO_SUBMIT,
    SPAWN_REQUESTED,
    STREAM,
)

FORGED_COMPLETION: dict[str, Any] = {
    "scenario_id": "scn-00000000000000aa",
    "completion_reason": "submitted",
    "variables": {"router_ip": "10.0.0.1"},
    "criteria": [{"id": "c1", "passed": True, "checks": [{"passed": True, "exit_code": 0}]}],
}


class Probe:
    """A raw client logged in as one identity; records what the server refused."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def open(self, server: NatsServer, identity: str) -> Probe:
        creds = server.credentials(identity)

        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        self.nc = await nats_client.connect(
            server.url, user=creds.user, password=creds.password,
            inbox_prefix=creds.inbox_prefix, error_cb=on_error, allow_reconnect=False)
        return self

    def refused(self, action: str, subject: str) -> bool:
        """The server answered "permissions violation for <action> to <subject>"."""
        needle = f'permissions violation for {action} to "{subject.lower()}"'
        return any(needle in e for e in self.errors)

    async def settle(self) -> None:
        assert self.nc is not None
        await self.nc.flush(timeout=5)
        await asyncio.sleep(0.2)  # the -ERR line arrives after the round trip

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


@pytest.fixture
async def probes() -> AsyncIterator[list[Probe]]:
    made: list[Probe] = []
    yield made
    for probe in made:
        await probe.close()


async def probe_as(probes: list[Probe], server: NatsServer, identity: str) -> Probe:
    probe = await Probe().open(server, identity)
    probes.append(probe)
    return probe


async def stored_on(server: NatsServer, subject: str) -> dict[str, Any] | None:
    """The last event stored on `subject` in the Forge stream (read as the admin), or None."""
    nc = await nats_client.connect(server.admin_url)
    try:
        msg = await nc.jetstream().get_last_msg(STREAM, subject)
    except NotFoundError:
        return None
    finally:
        await nc.close()
    body: dict[str, Any] = json.loads(msg.data or b"{}")
    return body


async def test_anonymous_client_cannot_connect(nats: NatsServer) -> None:
    with pytest.raises(nats_errors.Error, match="Authorization Violation"):
        await nats_client.connect(nats.url, allow_reconnect=False, connect_timeout=10)
    with pytest.raises(BusUnavailable, match="Authorization Violation"):
        await connect(nats.url, "anonymous", timeout=10)


async def test_wrong_password_is_refused(nats: NatsServer) -> None:
    with pytest.raises(BusUnavailable, match="Authorization Violation"):
        await connect(nats.url, "guess", timeout=10,
                      credentials=BusCredentials("orchestrator", "not-the-password"))
    # One service's real password does not open another service's identity.
    stolen = nats.credentials("spawn").password
    with pytest.raises(BusUnavailable, match="Authorization Violation"):
        await connect(nats.url, "borrowed", timeout=10,
                      credentials=BusCredentials("orchestrator", stolen))


@pytest.mark.parametrize("identity", ["spawn", "scoreboard"])
async def test_forged_completion_is_refused_by_the_server(
    nats: NatsServer, probes: list[Probe], identity: str
) -> None:
    probe = await probe_as(probes, nats, identity)
    assert probe.nc is not None
    await probe.nc.publish(SCENARIO_COMPLETED, json.dumps(FORGED_COMPLETION).encode())
    with pytest.raises(nats_errors.TimeoutError):  # JetStream never sees it, so never acks
        await probe.nc.jetstream().publish(
            SCENARIO_COMPLETED, json.dumps(FORGED_COMPLETION).encode(), timeout=1)
    await probe.settle()
    assert probe.refused("publish", SCENARIO_COMPLETED), probe.errors
    assert await stored_on(nats, SCENARIO_COMPLETED) is None
    # The same event from the orchestrator's identity is accepted (the control).
    async with Publisher(nats.url, credentials=nats.credentials("orchestrator")) as pub:
        await pub.publish(SCENARIO_COMPLETED, FORGED_COMPLETION, msg_id="real-completion")
    assert await stored_on(nats, SCENARIO_COMPLETED) == FORGED_COMPLETION


async def test_publisher_reports_a_refused_subject(nats: NatsServer) -> None:
    async with Publisher(nats.url, credentials=nats.credentials("spawn"), timeout=1) as pub:
        with pytest.raises(BusUnavailable, match="may not publish"):
            await pub.publish(SCENARIO_COMPLETED, FORGED_COMPLETION, msg_id="forged-1")


@pytest.mark.parametrize("identity", ["orchestrator", "scoreboard"])
async def test_only_spawn_submits_labs(
    nats: NatsServer, probes: list[Probe], identity: str
) -> None:
    submit = {"scenario_id": "scn-00000000000000bb", "reason": "submitted"}
    probe = await probe_as(probes, nats, identity)
    assert probe.nc is not None
    await probe.nc.publish(SCENARIO_SUBMIT, json.dumps(submit).encode())
    await probe.settle()
    assert probe.refused("publish", SCENARIO_SUBMIT), probe.errors
    assert await stored_on(nats, SCENARIO_SUBMIT) is None
    async with Publisher(nats.url, credentials=nats.credentials("spawn")) as pub:
        await pub.publish(SCENARIO_SUBMIT, submit, msg_id="submit-1")
    assert await stored_on(nats, SCENARIO_SUBMIT) == submit


async def test_scoreboard_cannot_request_labs(nats: NatsServer, probes: list[Probe]) -> None:
    probe = await probe_as(probes, nats, "scoreboard")
    assert probe.nc is not None
    await probe.nc.publish(SPAWN_REQUESTED, b'{"scenario_id": "scn-00000000000000cc"}')
    await probe.settle()
    assert probe.refused("publish", SPAWN_REQUESTED), probe.errors
    assert await stored_on(nats, SPAWN_REQUESTED) is None


async def test_spawn_cannot_read_grading_results(nats: NatsServer, probes: list[Probe]) -> None:
    """The learner-facing service never sees a completion (it carries the lab's answers)."""
    async with Publisher(nats.url, credentials=nats.credentials("orchestrator")) as pub:
        await pub.publish(SCENARIO_COMPLETED, FORGED_COMPLETION, msg_id="completion-1")
        await pub.publish(SCENARIO_ENDED, {"scenario_id": FORGED_COMPLETION["scenario_id"],
                                           "state": "completed"}, msg_id="ended-1")
    probe = await probe_as(probes, nats, "spawn")
    assert probe.nc is not None
    received: list[bytes] = []

    async def keep(msg: Any) -> None:
        received.append(msg.data)

    # Plain subscriptions: the subject, every Forge subject, and other identities' inboxes.
    for subject in (SCENARIO_COMPLETED, "forge.>", "_INBOX.>", "_INBOX_scoreboard.>", ">"):
        await probe.nc.subscribe(subject, cb=keep)
    await probe.settle()
    for subject in (SCENARIO_COMPLETED, "forge.>", "_INBOX.>", "_INBOX_scoreboard.>", ">"):
        assert probe.refused("subscription", subject), (subject, probe.errors)
    js = probe.nc.jetstream()
    # Its own durable, re-pointed at completions; a fresh consumer; reading the stream.
    with pytest.raises(nats_errors.TimeoutError):
        await js.add_consumer(STREAM, name=DURABLE_SPAWN_LIFECYCLE,
                              durable_name=DURABLE_SPAWN_LIFECYCLE,
                              filter_subject=SCENARIO_COMPLETED, timeout=1)
    with pytest.raises(nats_errors.TimeoutError):
        await js.add_consumer(STREAM, name="peek", filter_subject=SCENARIO_COMPLETED, timeout=1)
    with pytest.raises(nats_errors.TimeoutError):
        await js.get_last_msg(STREAM, SCENARIO_COMPLETED)
    with pytest.raises(nats_errors.TimeoutError):  # nor the scoreboard's own durable
        await probe.nc.request(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{DURABLE_SCOREBOARD_COMPLETED}",
                               b'{"batch": 1}', timeout=1)
    await probe.settle()
    assert probe.refused(
        "publish",
        f"$JS.API.CONSUMER.CREATE.{STREAM}.{DURABLE_SPAWN_LIFECYCLE}.{SCENARIO_COMPLETED}")
    assert probe.refused("publish", f"$JS.API.STREAM.MSG.GET.{STREAM}")
    assert received == []
    # What spawn does need still works: its durable on the slim `ended` notice.
    got: list[Event] = []

    async def handle(event: Event) -> None:
        got.append(event)

    async def dead(event: Event, error: str) -> None:
        raise AssertionError(error)

    consumer = DurableConsumer(nats.url, durable=DURABLE_SPAWN_LIFECYCLE,
                               subjects=(SCENARIO_ENDED,), handler=handle, on_dead_letter=dead,
                               credentials=nats.credentials("spawn"), fetch_timeout=0.5)
    assert await consumer.start(wait=10)
    try:
        for _ in range(600):  # bounded: 30 s on a loaded machine
            if got:
                break
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
    assert [e.data for e in got] == [{"scenario_id": FORGED_COMPLETION["scenario_id"],
                                      "state": "completed"}]
    assert "variables" not in got[0].data and "criteria" not in got[0].data


@pytest.fixture
def open_nats() -> Iterator[str]:
    """A nats-server someone started without any users (what Forge must not trust)."""
    port = free_port()
    proc = subprocess.Popen([str(find_nats_server()), "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_services_refuse_an_open_bus_outside_dev(open_nats: str) -> None:
    """Pointing NATS_URL at a server without users would let anyone forge completions."""
    strict = BusCredentials("orchestrator", "orchestrator-password-0123456789-abcdef")
    last: Exception | None = None
    for _ in range(50):  # the server may still be starting
        try:
            await connect(open_nats, "orchestrator", timeout=10, credentials=strict)
        except BusUnavailable as exc:
            last = exc
            if "does not require authentication" in str(exc):
                break
            await asyncio.sleep(0.1)
    assert last is not None and "does not require authentication" in str(last)
    assert strict.password not in str(last)
    lenient = BusCredentials("orchestrator", strict.password, require_auth=False)  # dev only
    nc = await connect(open_nats, "dev", timeout=10, credentials=lenient)
    await nc.close()
