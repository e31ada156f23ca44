"""This orchestrator as a lab node: capacity, the pull gate, heartbeats, drain, the lease.

A node pulls spawn work only while it has room, in capacity and on its storage root's disk
(`try_enter` is consulted by the spawn consumer before every fetch); a spawn that no longer
fits when it arrives goes back to the queue for another node (`RetryLater`, never a
failure). Each heartbeat rewrites the node's KV record, reads its drain flag,
resynchronises the labs it holds from the store (without a read when nothing was committed
to it and the node's labs are as the last one left them), and takes or renews the sweeper
lease; the lease holder alone fails the labs of lost nodes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

import nats.errors
from sqlalchemy import Table, bindparam, select

from forge import __version__
from forge.bus.connection import BusConnection
from forge.bus.errors import BusError
from forge.bus.nodes import BOOT_ID, NodeFenced, NodeIdInUse, NodeRecord, NodeRegistry
from forge.config.settings import Settings
from forge.disk_room import short_of_room
from forge.lifecycle import states
from forge.lifecycle.store import Transition
from forge.store.data_version import DataVersion
from forge.store.db import Database
from forge.store.models import Scenario
from forge.templates.problems import UnknownTemplate
from forge.templates.registry import TemplateRegistry

log = logging.getLogger("forge.orchestrator.node")
NOT_HERE_DELAY_S = 2.0  # a spawn this node cannot fit goes back for this long (bounded)
# Free space on the storage root below which the node fetches no new spawn (its audit log,
# evidence and recordings go there), and how often it asks the file system.
ROOM_NEEDED_BYTES = 2 * 1024 * 1024
ROOM_RECHECK_S = 2.0
_BUS_ERRORS = (BusError, nats.errors.Error, TimeoutError, OSError)


def lost_reason(node_id: str) -> str:
    """The reason the lease holder gives the labs it fails for a lost node."""
    return f"lab node {node_id} lost"


def lost_deleted_reason(node_id: str) -> str:
    """The reason for a lost node's running lab whose delete was kept for it
    (`want_delete`): the learner asked for the delete, so it ends `deleted`, not `failed`."""
    return f"deleted on request (lab node {node_id} lost before it carried it out)"


def lab_memory_mb(registry: TemplateRegistry, template_id: str) -> int:
    """Memory a lab of this template may use: its per-host limit times its hosts."""
    try:
        spec = registry.get(template_id).template.spec
    except UnknownTemplate:
        return 0
    return int(spec.limits.memory_mb) * max(1, len(spec.assets.containers))


_SCENARIOS: Table = Scenario.__table__  # type: ignore[assignment]
# Every node reads these every heartbeat (2 s): Core statements built once, plain rows.
# LIVE_PLACED: (node_id, scenario_id, template_id, state) of every live lab on a node.
LIVE_PLACED = select(_SCENARIOS.c.node_id, _SCENARIOS.c.scenario_id,
                      _SCENARIOS.c.template_id, _SCENARIOS.c.state).where(
    _SCENARIOS.c.node_id.is_not(None), _SCENARIOS.c.state.in_(sorted(states.LIVE)))
_ENDED = select(_SCENARIOS.c.scenario_id, _SCENARIOS.c.state_reason).where(
    _SCENARIOS.c.scenario_id.in_(bindparam("ids", expanding=True)),
    _SCENARIOS.c.state.in_(sorted(states.TERMINAL)))


@dataclass(frozen=True)
class PlacedLabs:
    """One heartbeat's read of where live labs are: this node's labs it does not hold yet
    (with their memory), the held labs that ended, and every other node's live labs."""

    adopted: dict[str, int]
    ended: list[tuple[str, str | None]]
    elsewhere: dict[str, list[tuple[str, str]]]


def read_placed(db: Database, registry: TemplateRegistry, node_id: str,
                held: Collection[str]) -> PlacedLabs:
    """Blocking, one read transaction (one snapshot on SQLite; read committed on
    PostgreSQL, where a row found ended has ended all the same): the live labs of every
    node, and which of `held` (this node's labs as the loop last counted them) have ended.
    Only labs missing from the live ones are looked up again, so a steady node makes one
    query."""
    adopted: dict[str, int] = {}
    ours: set[str] = set()
    elsewhere: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with db.read() as sess:
        conn = sess.connection()
        for placed_on, scenario_id, template_id, current in conn.execute(LIVE_PLACED):
            if placed_on != node_id:
                elsewhere[str(placed_on)].append((scenario_id, current))
                continue
            ours.add(scenario_id)
            if scenario_id not in held:
                adopted[scenario_id] = lab_memory_mb(registry, template_id)
        missing = sorted(set(held) - ours)
        ended = [(sid, reason) for sid, reason in
                 conn.execute(_ENDED, {"ids": missing})] if missing else []
    return PlacedLabs(adopted, ended, dict(elsewhere))


@dataclass
class LabNode:
    """Capacity and liveness of this node; all counters live on the event loop."""

    settings: Settings
    registry: TemplateRegistry
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: float = field(default_factory=time.time)
    held: dict[str, int] = field(default_factory=dict)
    # Labs released since the heartbeat's store read began: its snapshot may still show
    # them live, and they must not be counted again (`resync`).
    released_since_read: set[str] = field(default_factory=set)
    inflight: int = 0
    draining: bool = False
    fenced: bool = False
    revision: int | None = None
    lease_revision: int | None = None
    kv: NodeRegistry | None = None
    bus: BusConnection | None = None  # the heartbeat's connection (`kv` uses it)
    # Monotonic time since which this node's heartbeats succeed without a break (None while
    # out of touch; a gap of more than half the grace period between two is a break). A
    # record is judged stale only once we could watch it for a grace period, else a bus
    # failover would make every live node look lost to the first one back.
    in_touch_since: float | None = None
    last_beat_at: float | None = None  # monotonic end of the last successful heartbeat
    # The last heartbeat's failure (None once one succeeds) and since when they fail.
    beat_error: str | None = None
    beat_failing_since: float | None = None
    # Final moves whose notices the bus did not take (a failover): lost nodes' labs this
    # node failed and its own labs' ends (deleted, expired, failed). Published again every
    # heartbeat until it does, so their quota slots are freed.
    unannounced: dict[str, Transition] = field(default_factory=dict)
    # Tells whether anything was committed to the store since the last heartbeat's read
    # (None: always read). With neither the store nor `held` changed since, a read would
    # find what the last one did: the heartbeat skips it (`settled`).
    store_version: DataVersion | None = None
    _last_read: tuple[frozenset[str], dict[str, list[tuple[str, str]]]] | None = \
        field(init=False, default=None)
    # Memory of the smallest lab any loaded template makes (the registry never changes
    # while the process runs): computed once, not on every `try_enter` poll.
    smallest_lab_mb: int = field(init=False, default=16)
    _storage_short: bool = field(init=False, default=False)
    _room_checked_at: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        sizes = [lab_memory_mb(self.registry, t) for t in self.registry.names()]
        self.smallest_lab_mb = min((s for s in sizes if s > 0), default=16)

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    @property
    def url(self) -> str:
        """Where this node says it is reached (its record; ORCHESTRATOR_URL when unset)."""
        return self.settings.node_url or self.settings.orchestrator_url

    @property
    def leader(self) -> bool:
        """True while this node holds the sweeper lease (cluster-wide duties)."""
        return self.lease_revision is not None

    def may_judge_loss(self) -> bool:
        """True once this node has been in touch with the bus for a whole grace period."""
        return (self.in_touch_since is not None
                and time.monotonic() - self.in_touch_since >= self.settings.node_grace_s)

    @property
    def memory_in_use(self) -> int:
        return sum(self.held.values())

    def open(self) -> bool:
        """May this node take new labs at all (registered, not fenced, not drained)?"""
        return self.revision is not None and not self.fenced and not self.draining

    def storage_short(self) -> bool:
        """Is this node's storage root (nearly) full? A lab built here would fail on it;
        left to another node, or to later, it will not. Asked at most every ROOM_RECHECK_S."""
        now = time.monotonic()
        if now - self._room_checked_at >= ROOM_RECHECK_S:
            self._room_checked_at = now
            short = short_of_room(self.settings.storage_root, ROOM_NEEDED_BYTES)
            if short and not self._storage_short:
                log.warning("node %s takes no new lab: its storage root %s is out of room; "
                            "it takes them again once there is room", self.node_id,
                            self.settings.storage_root)
            elif self._storage_short and not short:
                log.warning("node %s: its storage root has room again; it takes new labs",
                            self.node_id)
            self._storage_short = short
        return self._storage_short

    def try_enter(self) -> bool:
        """Before a fetch: room for one more lab (counting fetches under way, and on the
        storage root)? Reserves it."""
        if not self.open() or self.storage_short():
            return False
        if len(self.held) + self.inflight >= self.settings.node_capacity_labs:
            return False
        if self.memory_in_use + (self.inflight + 1) * self.smallest_lab_mb \
                > self.settings.node_capacity_memory_mb:
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        """After a fetch and its handler: the reservation ends (the lab is `held` by now)."""
        self.inflight = max(0, self.inflight - 1)

    def reserve(self, scenario_id: str, memory_mb: int) -> bool:
        """Hold a slot for this lab if it fits now (atomic on the loop); False if not."""
        if scenario_id in self.held:
            return True
        if not self.open() or len(self.held) >= self.settings.node_capacity_labs \
                or self.memory_in_use + memory_mb > self.settings.node_capacity_memory_mb:
            return False
        self.held[scenario_id] = memory_mb
        return True

    def release(self, scenario_id: str) -> None:
        """The lab ended (or was never built here): its capacity is free again."""
        self.held.pop(scenario_id, None)
        self.released_since_read.add(scenario_id)

    def record(self, *, stopped: bool = False) -> NodeRecord:
        """What this node publishes about itself."""
        return NodeRecord(stopped=stopped,
            node_id=self.node_id, url=self.url,
            capacity_labs=self.settings.node_capacity_labs,
            capacity_memory_mb=self.settings.node_capacity_memory_mb,
            labs_in_use=len(self.held), memory_in_use_mb=self.memory_in_use,
            draining=self.draining, version=__version__, started_at=self.started_at,
            heartbeat_at=time.time(), instance=self.instance, boot_id=BOOT_ID)

    def resync(self, placed: PlacedLabs) -> list[str]:
        """On the loop: add labs the store says are ours; drop those that ended meanwhile.
        Returns the dropped labs another node failed as this node's while it was judged lost
        (its lab is still in this runtime: the caller destroys it)."""
        for scenario_id, memory_mb in placed.adopted.items():
            if scenario_id not in self.released_since_read:
                self.held.setdefault(scenario_id, memory_mb)
        failed_as_lost: list[str] = []
        for scenario_id, reason in placed.ended:
            self.held.pop(scenario_id, None)
            if reason in (lost_reason(self.node_id), lost_deleted_reason(self.node_id)):
                failed_as_lost.append(scenario_id)
        return sorted(failed_as_lost)

    def settled(self) -> PlacedLabs | None:
        """The last heartbeat's read, with nothing left to adopt or drop, when nothing was
        committed to the store and `held` is as that heartbeat left it; None: read again.
        Asked before every read (it notes the store's version the read will see)."""
        changed = self.store_version is None or self.store_version.changed()
        last, self._last_read = self._last_read, None
        if changed or last is None or last[0] != frozenset(self.held):
            return None
        self._last_read = last
        return PlacedLabs({}, [], last[1])

    def resynced(self, placed: PlacedLabs) -> None:
        """After `resync(placed)`: what the next heartbeat may reuse (`settled`)."""
        self._last_read = (frozenset(self.held), placed.elsewhere)

    async def register(self) -> None:
        """First heartbeat: claim the node id (NodeIdInUse when a live node has it)."""
        assert self.kv is not None
        self.draining = await self.kv.draining(self.node_id)
        self.revision = await self.kv.claim(self.record(), self.settings.node_heartbeat_s)
        log.info("lab node %s registered at %s (capacity %d labs, %d MiB)", self.node_id,
                 self.url, self.settings.node_capacity_labs,
                 self.settings.node_capacity_memory_mb)

    async def beat(self) -> None:
        """One heartbeat: drain flag, record, lease. Fencing is final (fail closed)."""
        assert self.kv is not None
        if self.fenced:
            return
        self.draining = await self.kv.draining(self.node_id)
        if self.revision is None:
            await self.register()
        else:
            try:
                self.revision = await self.kv.beat(self.record(), self.revision)
            except NodeFenced as exc:
                self.fenced = True
                self.lease_revision = None
                log.error("%s: this node takes no more work", exc)
                return
        self.lease_revision = await self.kv.lease(self.node_id, self.lease_revision)
        # A heartbeat that failed, or one that took long (a request held through a
        # reconnect), means others may have been cut off as long: watch them afresh.
        now = time.monotonic()
        if self.in_touch_since is None or self.last_beat_at is None \
                or now - self.last_beat_at > self.settings.node_grace_s / 2:
            self.in_touch_since = now
        self.last_beat_at = now


    async def stop(self) -> None:
        """Clean stop: say so in the record (a restart under this id need not wait for it to
        go stale); the record stays, so a node that does not come back is still lost."""
        try:
            if self.kv is not None and self.revision is not None and not self.fenced:
                self.revision = await self.kv.beat(self.record(stopped=True), self.revision)
                self.revision = None
        finally:
            if self.store_version is not None:
                self.store_version.close()


async def start_node(node: LabNode, timeout: float) -> None:
    """Register before any consumer pulls; NodeIdInUse propagates (the process must not
    start). With the bus unreachable the heartbeat loop registers later (the gate stays
    shut until then)."""
    try:
        await asyncio.wait_for(node.register(), timeout)
    except NodeIdInUse:
        raise
    except (TimeoutError, *_BUS_ERRORS) as exc:
        log.warning("lab node %s not registered yet (%s); retrying with the heartbeat",
                    node.node_id, type(exc).__name__)
        node.revision = None


def is_id_conflict(exc: BaseException) -> bool:
    """True for the error that must stop the process (another live node has our id)."""
    return isinstance(exc, NodeIdInUse)


def bus_failure(exc: BaseException) -> bool:
    """True for errors a heartbeat survives (the bus is away for a while)."""
    return isinstance(exc, _BUS_ERRORS)
