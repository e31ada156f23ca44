"""Who may say what on the bus: per-service NATS identities and their subject permissions.

Each Forge service connects as its own NATS user and may publish only the events it owns
and read only its own durable consumers (JetStream API subjects are granted per durable and
per filter subject, so a service cannot open a consumer on someone else's events). Replies
go to a per-identity inbox prefix, so no identity can listen to another's deliveries.

A user name is derived from the identity and a one-way digest of its password, so the server
can accept a current and a next password side by side during a rotation.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from forge.bus.subjects import (
    DURABLE_ORCHESTRATOR_SPAWN,
    DURABLE_ORCHESTRATOR_SUBMIT,
    DURABLE_SCOREBOARD_COMPLETED,
    DURABLE_SCOREBOARD_LTI_GRADES,
    DURABLE_SPAWN_LIFECYCLE,
    FORGE_STREAMS,
    NODE_STREAM,
    SCENARIO_COMPLETED,
    SCENARIO_ENDED,
    SCENARIO_STATES,
    SCENARIO_SUBMIT,
    SCENARIO_SUBMIT_NODES,
    SCORE_FINALIZED,
    SPAWN_REQUESTED,
    STREAM,
    scenario_subject,
)

SERVICE_IDENTITIES: tuple[str, ...] = ("spawn", "orchestrator", "scoreboard")
# JetStream KV buckets of the lab nodes (heartbeats and the sweeper lease; drain flags).
NODES_BUCKET = "forge_nodes"
DRAIN_BUCKET = "forge_node_drain"
LEASE_BUCKET = "forge_node_lease"
ADMIN = "admin"
_USER_DOMAIN = b"frostgate-forge/nats-user/v1:"


@dataclass(frozen=True)
class Grant:
    """What one identity may do: events it publishes, durables (and their filter) it reads."""

    publish: tuple[str, ...]
    consumers: tuple[tuple[str, str], ...] = ()
    manage_streams: bool = False
    # Object Store buckets (no disk shared between services): (bucket, "write" | "read").
    buckets: tuple[tuple[str, str], ...] = ()
    # Lab nodes: durables of any name whose filter is exactly this subject (one per node,
    # named after it), and the KV buckets the identity reads and writes.
    node_consumers: tuple[str, ...] = ()
    kv_buckets: tuple[str, ...] = ()


# Evidence and artifacts travel through Object Store buckets, each usable only by the
# services that need it: a lab node writes evidence packs the scoreboard reads; the
# scoreboard writes result artifacts (FORGE_ARTIFACT_STORE=jetstream). spawn_service, which
# faces learners, can neither read nor write either bucket.
EVIDENCE_BUCKET = "forge-evidence"
ARTIFACT_BUCKET = "forge-artifacts"

GRANTS: Mapping[str, Grant] = {
    # spawn_service is learner-facing: it asks for labs and submits them, and hears only that
    # a scenario ended (never the grading results, which carry the lab's answers).
    "spawn": Grant(
        publish=(SPAWN_REQUESTED, SCENARIO_SUBMIT, SCENARIO_SUBMIT_NODES),
        consumers=((DURABLE_SPAWN_LIFECYCLE, SCENARIO_ENDED),),
    ),
    "orchestrator": Grant(
        publish=(*(scenario_subject(s) for s in SCENARIO_STATES), SCENARIO_ENDED),
        consumers=(
            (DURABLE_ORCHESTRATOR_SPAWN, SPAWN_REQUESTED),
            (DURABLE_ORCHESTRATOR_SUBMIT, SCENARIO_SUBMIT),
        ),
        manage_streams=True,
        buckets=((EVIDENCE_BUCKET, "write"),),
        node_consumers=(SCENARIO_SUBMIT_NODES,),
        kv_buckets=(NODES_BUCKET, DRAIN_BUCKET, LEASE_BUCKET),
    ),
    "scoreboard": Grant(
        publish=(SCORE_FINALIZED,),
        consumers=((DURABLE_SCOREBOARD_COMPLETED, SCENARIO_COMPLETED),
                   # LTI grade passback: a signed verdict of a launched assignment is owed
                   # to its platform (issue 18 item 4).
                   (DURABLE_SCOREBOARD_LTI_GRADES, SCORE_FINALIZED)),
        # Retention (`forge retention run` speaks as the scoreboard) deletes a scenario's
        # evidence packs with its expired results: "delete" = read, plus the deleted marker
        # and the chunk purge, but never writing chunks.
        buckets=((EVIDENCE_BUCKET, "delete"), (ARTIFACT_BUCKET, "write")),
    ),
}


def bucket_subjects(bucket: str, mode: str) -> list[str]:
    """The JetStream API and data subjects one Object Store bucket needs: read = look up the
    object's meta and stream its chunks through an ordered consumer; write = also create
    the bucket, publish chunks and meta, and purge replaced chunks; delete = read, plus
    publish meta (the deleted marker) and purge chunks, without publishing chunks."""
    if mode not in ("read", "write", "delete"):
        raise ValueError(f"mode: {mode!r} is not read, write or delete")
    api, stream = "$JS.API", f"OBJ_{bucket}"
    subjects = [f"{api}.STREAM.INFO.{stream}", f"{api}.STREAM.MSG.GET.{stream}",
                f"{api}.DIRECT.GET.{stream}", f"{api}.DIRECT.GET.{stream}.>",
                f"{api}.CONSUMER.CREATE.{stream}", f"{api}.CONSUMER.CREATE.{stream}.>",
                f"{api}.CONSUMER.DELETE.{stream}.>", f"{api}.CONSUMER.INFO.{stream}.>",
                f"$JS.FC.{stream}.>",
                # nats-py finds an ordered consumer's stream by subject (names only).
                f"{api}.STREAM.NAMES"]
    if mode == "write":
        subjects += [f"{api}.STREAM.CREATE.{stream}", f"{api}.STREAM.UPDATE.{stream}",
                     f"{api}.STREAM.PURGE.{stream}", f"$O.{bucket}.>"]
    if mode == "delete":  # read, plus a deleted marker as the meta and the chunk purge
        subjects += [f"{api}.STREAM.PURGE.{stream}", f"$O.{bucket}.M.>"]
    return subjects


def check_identity(identity: str, *, allow_admin: bool = False) -> str:
    """Return `identity` if it is a known bus identity, else raise naming the choices."""
    known = (*SERVICE_IDENTITIES, ADMIN) if allow_admin else SERVICE_IDENTITIES
    if identity not in known:
        raise ValueError(f"identity: {identity!r} is not one of {', '.join(known)}")
    return identity


def user_name(identity: str, password: str) -> str:
    """The NATS user for this identity and password (`forge-<identity>-<12 hex>`)."""
    digest = hashlib.sha256(_USER_DOMAIN + identity.encode() + b":" + password.encode())
    return f"forge-{identity}-{digest.hexdigest()[:12]}"


def inbox_prefix(identity: str) -> str:
    """The reply-subject prefix of an identity; only it may subscribe below it."""
    return "_INBOX" if identity == ADMIN else f"_INBOX_{identity}"


@dataclass(frozen=True)
class BusCredentials:
    """How one client authenticates: identity and password (never shown in repr).

    `require_auth` refuses a server that does not ask for credentials at all: on an open
    bus anyone could publish a completion, so outside dev that is a connection failure.
    `server_ca` (PEM) is whom the password goes to: with it the client speaks TLS first and
    goes on only with a server whose certificate that CA signed (`forge.bus.tls`).
    """

    identity: str
    password: str = field(repr=False)
    require_auth: bool = True
    server_ca: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_identity(self.identity, allow_admin=True)
        if not self.password:
            raise ValueError(f"password: empty NATS password for {self.identity}")

    @property
    def user(self) -> str:
        """NATS user name sent on connect."""
        return user_name(self.identity, self.password)

    @property
    def inbox_prefix(self) -> str:
        """Inbox prefix the client must use (its subscribe permission covers only this)."""
        return inbox_prefix(self.identity)


def permissions(identity: str) -> dict[str, Any]:
    """nats-server `permissions` of one identity (allow lists; everything else is denied)."""
    check_identity(identity, allow_admin=True)
    if identity == ADMIN:
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    grant = GRANTS[identity]
    api = "$JS.API"
    streams = [spec.name for spec in FORGE_STREAMS]
    publish = [*grant.publish, *(f"{api}.STREAM.INFO.{name}" for name in streams)]
    if grant.manage_streams:
        for name in streams:
            publish += [f"{api}.STREAM.CREATE.{name}", f"{api}.STREAM.UPDATE.{name}"]
    for durable, filter_subject in grant.consumers:
        publish += [
            # Only the filtered form: the server rejects a config whose filter differs.
            f"{api}.CONSUMER.CREATE.{STREAM}.{durable}.{filter_subject}",
            f"{api}.CONSUMER.INFO.{STREAM}.{durable}",
            f"{api}.CONSUMER.MSG.NEXT.{STREAM}.{durable}",
            f"$JS.ACK.{STREAM}.{durable}.>",
            f"$JS.ACK.*.*.{STREAM}.{durable}.>",
        ]
    for bucket, mode in grant.buckets:
        publish += bucket_subjects(bucket, mode)
    for filter_subject in grant.node_consumers:
        # One durable per node, named after it: granted by name wildcard, but only in the
        # FORGE_NODES stream, which holds nothing but node work (no other service's durable).
        publish += [f"{api}.CONSUMER.CREATE.{NODE_STREAM}.*.{filter_subject}",
                    f"{api}.CONSUMER.INFO.{NODE_STREAM}.*",
                    f"{api}.CONSUMER.MSG.NEXT.{NODE_STREAM}.*",
                    f"$JS.ACK.{NODE_STREAM}.*.>", f"$JS.ACK.*.*.{NODE_STREAM}.*.>"]
    for bucket in grant.kv_buckets:
        kv_stream = f"KV_{bucket}"
        publish += [f"$KV.{bucket}.>", f"{api}.STREAM.INFO.{kv_stream}",
                    f"{api}.STREAM.CREATE.{kv_stream}", f"{api}.STREAM.UPDATE.{kv_stream}",
                    f"{api}.STREAM.MSG.GET.{kv_stream}", f"{api}.DIRECT.GET.{kv_stream}",
                    f"{api}.DIRECT.GET.{kv_stream}.>"]
    return {"publish": {"allow": publish}, "subscribe": {"allow": [f"{inbox_prefix(identity)}.>"]}}


@dataclass(frozen=True)
class BusAuth:
    """Every accepted password per identity (current first), for the server's user list."""

    passwords: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        for identity, values in self.passwords.items():
            check_identity(identity, allow_admin=True)
            if not values or not all(values):
                raise ValueError(f"passwords: {identity} needs at least one non-empty password")

    def __repr__(self) -> str:  # never show passwords
        return f"BusAuth(identities={sorted(self.passwords)})"

    @classmethod
    def generate(cls) -> BusAuth:
        """Fresh random passwords for every service identity and the admin."""
        return cls({i: (secrets.token_urlsafe(32),) for i in (*SERVICE_IDENTITIES, ADMIN)})

    def credentials(self, identity: str) -> BusCredentials:
        """The current credentials of `identity`."""
        check_identity(identity, allow_admin=True)
        if identity not in self.passwords:
            raise KeyError(f"identity: no NATS password configured for {identity}")
        return BusCredentials(identity, self.passwords[identity][0])

    def with_admin(self) -> BusAuth:
        """A copy that also has an admin identity (random if absent), for provisioning."""
        if ADMIN in self.passwords:
            return self
        return BusAuth({**self.passwords, ADMIN: (secrets.token_urlsafe(32),)})

    def users(self) -> list[dict[str, Any]]:
        """The `authorization.users` entries: one per accepted password."""
        out: list[dict[str, Any]] = []
        for identity in sorted(self.passwords):
            perms = permissions(identity)
            for password in dict.fromkeys(self.passwords[identity]):
                out.append({"user": user_name(identity, password), "password": password,
                            "permissions": perms})
        return out

    def server_config(self) -> str:
        """An `authorization { users = [...] }` block for nats-server (JSON is valid NATS conf)."""
        return "authorization " + json.dumps({"users": self.users()}, indent=2) + "\n"
