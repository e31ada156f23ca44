"""Lab node registry on JetStream KV: heartbeats, the sweeper lease, drain flags.

* `forge_nodes`: `node.<id>` holds each node's record, rewritten every heartbeat with a
  compare-and-set on its last revision, so a second process claiming a live node's id is
  refused (and a node whose key was overwritten by another instance fences itself). A node
  whose record has not changed for the grace period (watched on the reader's monotonic
  clock, never by comparing two machines' wall clocks) is lost; the bucket forgets records after
  LOST_KEPT x grace, so `forge nodes list` shows a lost node for a while.
* `forge_node_lease` (TTL = the grace period): `sweeper` is the one cluster-wide lease,
  created with `create` (fails while another node holds it) and renewed by compare-and-set;
  it lapses by itself when its holder stops.
* `forge_node_drain` (no TTL): `<id>` present = drained (the node takes no new labs).

All are created through `ensure_kv`, so FORGE_NATS_REPLICAS applies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict

from forge.bus.errors import BusError
from forge.bus.permissions import DRAIN_BUCKET, LEASE_BUCKET, NODES_BUCKET
from forge.bus.replication import ensure_kv

LEASE_KEY = "sweeper"
LOST_KEPT = 10
TAKEOVER_BEATS = 3
_NODE_PREFIX = "node."


class NodeRecord(BaseModel):
    """What a node says about itself every heartbeat."""

    model_config = ConfigDict(extra="ignore")

    node_id: str
    url: str
    capacity_labs: int
    capacity_memory_mb: int
    labs_in_use: int = 0
    memory_in_use_mb: int = 0
    draining: bool = False
    version: str = ""
    started_at: float
    heartbeat_at: float
    instance: str
    stopped: bool = False  # written by a clean stop: a successor may take the id at once
    # The writer's kernel boot id: a record written under this machine's boot id was timed
    # by this machine's own clock, so its age may be trusted (a restart after a crash).
    boot_id: str = ""

    def age(self, now: float | None = None) -> float:
        """Seconds since this record was written, by the writer's clock against the reader's:
        for display only (`forge nodes list`); loss is judged by `NodeRegistry.alive`."""
        return max(0.0, (time.time() if now is None else now) - self.heartbeat_at)


def _read_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except (OSError, UnicodeError):
        return ""


BOOT_ID = _read_boot_id()
"""This machine's kernel boot id ("" where the kernel does not say): same boot, same clock."""


class NodeIdInUse(BusError):
    """Another live process heartbeats under this node id: refuse to start (fail closed)."""


class NodeFenced(BusError):
    """This node's key was rewritten by another instance: it must stop taking work."""


def _encode(record: NodeRecord) -> bytes:
    return json.dumps(record.model_dump(), sort_keys=True).encode()


def _decode(raw: bytes | None) -> NodeRecord | None:
    try:
        return NodeRecord.model_validate_json(raw or b"")
    except ValueError:
        return None


class NodeRegistry:
    """The KV side of lab nodes; `js` returns a live JetStream context (or raises)."""

    def __init__(self, js: Callable[[], JetStreamContext], *, replicas: int, grace_s: float,
                 manage: bool = True) -> None:
        self._js = js
        self.replicas = replicas
        self.grace_s = grace_s
        self._manage = manage
        self._kv: tuple[KeyValue, KeyValue, KeyValue] | None = None
        self._lock = asyncio.Lock()
        # node id -> (record revision, local monotonic time it was first seen): a node is
        # judged by whether its record keeps changing, never by comparing two machines' clocks.
        self._seen: dict[str, tuple[int, float]] = {}

    async def buckets(self) -> tuple[KeyValue, KeyValue, KeyValue]:
        """(nodes, drain, lease) buckets, created or scaled once per registry."""
        async with self._lock:
            if self._kv is None:
                js = self._js()
                specs = ((NODES_BUCKET, LOST_KEPT * self.grace_s, "forge lab nodes"),
                         (DRAIN_BUCKET, None, "forge drained lab nodes"),
                         (LEASE_BUCKET, self.grace_s, "forge cluster-wide lease"))
                found = []
                for bucket, ttl, text in specs:
                    found.append(await ensure_kv(js, bucket, replicas=self.replicas, ttl=ttl,
                                                 description=text) if self._manage
                                 else await js.key_value(bucket))
                self._kv = (found[0], found[1], found[2])
            return self._kv

    def forget(self) -> None:
        """Drop the cached bucket handles (after a reconnect to another server)."""
        self._kv = None

    async def get(self, node_id: str) -> tuple[NodeRecord, int] | None:
        """The node's record and revision, or None when it has none (never seen, or lost)."""
        nodes, _, _ = await self.buckets()
        try:
            entry = await nodes.get(_NODE_PREFIX + node_id)
        except (KeyNotFoundError, NotFoundError):
            return None
        record = _decode(entry.value)
        return None if record is None or entry.revision is None else (record, entry.revision)

    def still_for(self, node_id: str, revision: int) -> float:
        """Seconds (this process's monotonic clock) the node's record has stood at
        `revision`, counted from when this registry first saw it there."""
        now = time.monotonic()
        seen = self._seen.get(node_id)
        if seen is None or seen[0] != revision:
            self._seen[node_id] = seen = (revision, now)
        return now - seen[1]

    async def alive(self, node_id: str) -> bool:
        """True while the node's record exists and has changed within the grace period (as
        watched from here: a record first seen now counts as fresh)."""
        found = await self.get(node_id)
        return found is not None and self.still_for(node_id, found[1]) <= self.grace_s

    async def records(self) -> list[NodeRecord]:
        """Every node record still in the bucket (alive, or lost within one TTL)."""
        await self.buckets()
        info = await self._js().stream_info(f"KV_{NODES_BUCKET}",
                                            subjects_filter=f"$KV.{NODES_BUCKET}.node.>")
        out: list[NodeRecord] = []
        for subject in sorted(info.state.subjects or {}):
            found = await self.get(subject.rsplit(".", 1)[-1])
            if found is not None:
                out.append(found[0])
        return out

    async def claim(self, record: NodeRecord, heartbeat_s: float) -> int:
        """Register this node; NodeIdInUse while another process heartbeats under its id.

        A record left by a crashed process is taken over once this process has watched it
        stand still for TAKEOVER_BEATS heartbeats (a live node that late is too busy to be
        trusted anyway); a live one keeps changing and is never taken over. The record's
        own timestamp is trusted only when it was written on this machine since its boot
        (a restart after a crash: taken over at once if already that old); another
        machine's clock may be skewed.
        """
        nodes, _, _ = await self.buckets()
        key = _NODE_PREFIX + record.node_id
        stale = TAKEOVER_BEATS * heartbeat_s
        watched: int | None = None
        while True:
            found = await self.get(record.node_id)
            if found is None:
                try:
                    return await nodes.create(key, _encode(record))
                except KeyWrongLastSequenceError:
                    raise NodeIdInUse(f"FORGE_NODE_ID {record.node_id} was just claimed by "
                                      "another process") from None
            other, revision = found
            if other.instance == record.instance:
                return await nodes.update(key, _encode(record), last=revision)
            if watched is not None and revision != watched:
                raise NodeIdInUse(f"FORGE_NODE_ID {record.node_id} is in use by a live node "
                                  f"(it is heartbeating, started {time.ctime(other.started_at)}"
                                  "); stop it or give this process another FORGE_NODE_ID")
            watched = revision
            same_clock = bool(other.boot_id) and other.boot_id == record.boot_id
            if other.stopped or (same_clock and other.age() > stale) \
                    or self.still_for(record.node_id, revision) > stale:
                try:
                    return await nodes.update(key, _encode(record), last=revision)
                except KeyWrongLastSequenceError:
                    continue  # it moved: look again (a live writer is refused above)
            await asyncio.sleep(min(0.25, heartbeat_s / 4))

    async def beat(self, record: NodeRecord, revision: int) -> int:
        """Rewrite the record if it is still ours; re-register if it lapsed; else NodeFenced."""
        nodes, _, _ = await self.buckets()
        key = _NODE_PREFIX + record.node_id
        try:
            return await nodes.update(key, _encode(record), last=revision)
        except KeyWrongLastSequenceError:
            pass
        found = await self.get(record.node_id)
        if found is None:  # lapsed (bus outage longer than the grace period): register again
            try:
                return await nodes.create(key, _encode(record))
            except KeyWrongLastSequenceError:
                found = await self.get(record.node_id)
        if found is not None and found[0].instance == record.instance:
            return await nodes.update(key, _encode(record), last=found[1])
        raise NodeFenced(f"node {record.node_id}: another process wrote this node's record")

    async def lease(self, holder: str, revision: int | None) -> int | None:
        """Take or renew the sweeper lease; its revision while held by `holder`, else None."""
        _, _, lease = await self.buckets()
        value = json.dumps({"holder": holder, "at": time.time()}).encode()
        try:
            if revision is None:
                return await lease.create(LEASE_KEY, value)
            return await lease.update(LEASE_KEY, value, last=revision)
        except KeyWrongLastSequenceError:
            return None

    async def lease_holder(self) -> str | None:
        """The node holding the sweeper lease now, if any."""
        _, _, lease = await self.buckets()
        try:
            entry = await lease.get(LEASE_KEY)
        except (KeyNotFoundError, NotFoundError):
            return None
        try:
            data: Any = json.loads(entry.value or b"{}")
        except ValueError:
            return None
        if not isinstance(data, dict):  # a lease value is always an object; anything else
            return None                 # counts as no holder
        holder = data.get("holder")
        return holder if isinstance(holder, str) else None

    async def draining(self, node_id: str) -> bool:
        """True when the node is drained (its flag is set)."""
        _, drain, _ = await self.buckets()
        try:
            await drain.get(node_id)
        except (KeyNotFoundError, NotFoundError):
            return False
        return True

    async def set_draining(self, node_id: str, on: bool) -> None:
        """Set or clear the node's drain flag."""
        _, drain, _ = await self.buckets()
        if on:
            await drain.put(node_id, b"1")
        else:
            await drain.delete(node_id)
