"""The bus's identities: permissions derived from the subject table, users, rotation, config."""

from __future__ import annotations

import json
import os
import stat

import pytest

from forge.bus import BusUnavailable, NatsServer, Publisher
from forge.bus.dial import connect
from forge.bus.permissions import (
    ADMIN,
    GRANTS,
    SERVICE_IDENTITIES,
    BusAuth,
    BusCredentials,
    permissions,
    user_name,
)
from forge.bus.subjects import (
    DURABLE_ORCHESTRATOR_SPAWN,
    DURABLE_ORCHESTRATOR_SUBMIT,
    DURABLE_SCOREBOARD_COMPLETED,
    DURABLE_SCOREBOARD_LTI_GRADES,
    DURABLE_SPAWN_LIFECYCLE,
    SCENARIO_COMPLETED,
    SCENARIO_SUBMIT,
    SPAWN_REQUESTED,
)
from forge.config.secrets import NATS_IDENTITIES

from .helpers import wait_until


def test_identities_match_the_configured_passwords() -> None:
    assert SERVICE_IDENTITIES == NATS_IDENTITIES == tuple(GRANTS)


def test_each_event_has_exactly_one_publisher() -> None:
    owners: dict[str, list[str]] = {}
    for identity, grant in GRANTS.items():
        for subject in grant.publish:
            owners.setdefault(subject, []).append(identity)
    assert all(len(who) == 1 for who in owners.values()), owners
    assert owners[SCENARIO_COMPLETED] == ["orchestrator"]
    assert owners[SCENARIO_SUBMIT] == ["spawn"]
    assert owners[SPAWN_REQUESTED] == ["spawn"]


def test_every_service_durable_is_granted_to_its_service_only() -> None:
    durables = {d: i for i, g in GRANTS.items() for d, _ in g.consumers}
    assert durables == {
        DURABLE_SPAWN_LIFECYCLE: "spawn",
        DURABLE_ORCHESTRATOR_SPAWN: "orchestrator",
        DURABLE_ORCHESTRATOR_SUBMIT: "orchestrator",
        DURABLE_SCOREBOARD_COMPLETED: "scoreboard",
        DURABLE_SCOREBOARD_LTI_GRADES: "scoreboard",
    }


def test_permissions_are_allow_lists_without_wildcard_reads() -> None:
    for identity in SERVICE_IDENTITIES:
        perms = permissions(identity)
        assert set(perms) == {"publish", "subscribe"}
        assert perms["subscribe"]["allow"] == [f"_INBOX_{identity}.>"]
        published = perms["publish"]["allow"]
        assert ">" not in published and "forge.>" not in published
        # Direct reads only of the Object Store buckets an identity is granted and of the
        # lab nodes' KV registry (read by key), never of the event streams.
        reads = [p for p in published if p.startswith(("$JS.API.STREAM.MSG.GET",
                                                        "$JS.API.DIRECT"))]
        assert all(".OBJ_forge-" in p or ".KV_" in p for p in reads), reads
        # Wildcard consumer names only in the stream of node work, never in FORGE.
        assert not any(p.startswith(("$JS.API.CONSUMER.MSG.NEXT.FORGE.*",
                                     "$JS.API.CONSUMER.INFO.FORGE.*")) for p in published)
    assert "$JS.API.STREAM.CREATE.FORGE" in permissions("orchestrator")["publish"]["allow"]
    assert "$JS.API.STREAM.CREATE.FORGE" not in permissions("spawn")["publish"]["allow"]
    assert permissions(ADMIN)["subscribe"]["allow"] == [">"]
    with pytest.raises(ValueError, match="identity: 'learner'"):
        permissions("learner")


def test_user_names_depend_on_the_password_and_hide_it() -> None:
    a, b = user_name("spawn", "one-password"), user_name("spawn", "two-password")
    assert a != b and a.startswith("forge-spawn-") and "password" not in a
    creds = BusCredentials("spawn", "one-password")
    assert creds.user == a and "one-password" not in repr(creds)
    with pytest.raises(ValueError, match="password: empty"):
        BusCredentials("spawn", "")
    auth = BusAuth({"spawn": ("one-password", "two-password")})
    assert "password" not in repr(auth)
    assert [u["user"] for u in auth.users()] == [a, b]


def test_server_config_is_owner_only_and_lists_every_password(nats_server: NatsServer) -> None:
    config = nats_server.store_dir / "nats-server.conf"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    text = config.read_text()
    for identity in (*SERVICE_IDENTITIES, ADMIN):
        assert nats_server.credentials(identity).user in text
    block = nats_server.auth.server_config()
    users = json.loads(block.removeprefix("authorization "))["users"]
    assert len(users) == 4


def test_client_env_names_each_service_password(nats_server: NatsServer) -> None:
    env = nats_server.client_env()
    assert env["NATS_URL"] == nats_server.url and "@" not in env["NATS_URL"]
    assert env["NATS_SPAWN_PASSWORD"] == nats_server.credentials("spawn").password
    assert set(env) == {"NATS_URL", "NATS_SPAWN_PASSWORD", "NATS_ORCHESTRATOR_PASSWORD",
                        "NATS_SCOREBOARD_PASSWORD"}


async def test_rotation_window_accepts_current_and_next() -> None:
    """During a rollout the server accepts both passwords of a service; after it, only one."""
    auth = BusAuth({"spawn": ("old-spawn-password", "new-spawn-password"),
                    "orchestrator": ("orchestrator-password",)})
    server = NatsServer(auth=auth)
    server.start()
    try:
        for password in ("old-spawn-password", "new-spawn-password"):
            async with Publisher(server.url, credentials=BusCredentials("spawn", password),
                                 timeout=10) as pub:
                ack = await pub.publish(SPAWN_REQUESTED, {"p": password[:3]},
                                        msg_id=f"rot-{password[:3]}")
                assert ack.seq > 0
        server.reload_auth(BusAuth({"spawn": ("new-spawn-password",)}))
        await wait_until(lambda: "Reloaded" in server.log_path.read_text(errors="replace"))
        with pytest.raises(BusUnavailable, match="Authorization Violation"):
            await connect(server.url, "old", timeout=10,
                          credentials=BusCredentials("spawn", "old-spawn-password"))
        nc = await connect(server.url, "new", timeout=10,
                           credentials=BusCredentials("spawn", "new-spawn-password"))
        await nc.close()
    finally:
        server.close()
