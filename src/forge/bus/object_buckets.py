"""Bounded reads and idempotent writes of JetStream Object Store objects.

Evidence packs and result artifacts cross machines through Object Store buckets (created
through `forge.bus.replication.ensure_object_store`, so `FORGE_NATS_REPLICAS` applies). A
write of an object that is already there with the same digest is a no-op (a retried
upload); a read checks the object's recorded size against a bound *before* downloading it,
so a huge object cannot exhaust the reader's memory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import weakref
from typing import Any

from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, ObjectStore

from forge.bus.errors import BusError, BusUnavailable
from forge.bus.replication import ensure_object_store


class ObjectMissing(BusError):
    """The bucket or the object does not exist."""


class ObjectTooLarge(BusError):
    """The object is larger than the reader accepts."""


def _digest_text(hashed: hashlib._Hash) -> str:
    """An object info's digest form of a finished sha256 (``SHA-256=`` + URL-safe base64)."""
    return "SHA-256=" + base64.urlsafe_b64encode(hashed.digest()).decode()


def _digest(data: bytes) -> str:
    return _digest_text(hashlib.sha256(data))


async def _bucket(js: JetStreamContext, bucket: str) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except (BucketNotFoundError, NotFoundError):
        raise ObjectMissing(f"Object Store bucket {bucket} does not exist") from None


# Buckets this process has created or scaled, per NATS connection: `ensure_object_store`
# costs three API round trips, so it runs once per connection and bucket, not per write.
_ensured: weakref.WeakKeyDictionary[Any, dict[str, ObjectStore]] = weakref.WeakKeyDictionary()


async def _writable(js: JetStreamContext, bucket: str, replicas: int,
                    description: str) -> ObjectStore:
    nc = getattr(js, "_nc", None)
    known = _ensured.get(nc) if nc is not None else None
    if known is not None and bucket in known:
        return known[bucket]
    store = await ensure_object_store(js, bucket, replicas=replicas, description=description)
    if nc is not None:
        _ensured.setdefault(nc, {})[bucket] = store
    return store


def _forget(js: JetStreamContext, bucket: str) -> None:
    nc = getattr(js, "_nc", None)
    if nc is not None and nc in _ensured:
        _ensured[nc].pop(bucket, None)


async def put_object(js: JetStreamContext, bucket: str, name: str, data: bytes, *,
                     replicas: int, description: str = "") -> None:
    """Store `data` as `name` (bucket created with `replicas` copies when missing, checked
    once per connection); an object already stored with the same digest is left alone. Bus
    faults raise BusUnavailable (and the next write checks the bucket again)."""
    try:
        store = await _writable(js, bucket, replicas, description)
        try:
            info = await store.get_info(name)
            if info.size == len(data) and (info.digest or "").upper() == _digest(data).upper():
                return
        except (ObjectNotFoundError, NotFoundError):
            pass
        await store.put(name, data)
    except BusError:
        _forget(js, bucket)
        raise
    except (NatsError, OSError, TimeoutError) as exc:
        _forget(js, bucket)
        raise BusUnavailable(f"cannot store {name} in {bucket}: {exc}") from exc


# A read gives up when no chunk arrives for this long (a stream leader failing over can
# leave an ordered consumer silent; nats-py's own recovery of it waits two missed 5 s
# heartbeats, and a lost one never comes back): the caller answers 503 and retries
# instead of holding a request, or a scoring thread, for the whole call deadline.
CHUNK_STALL_S = 5.0


async def get_object(js: JetStreamContext, bucket: str, name: str, *, max_bytes: int) -> bytes:
    """The bytes of `name` (at most `max_bytes`, checked before downloading), their size and
    digest checked against the object's info.

    ObjectMissing / ObjectTooLarge say what is wrong with the object; bus faults, a read
    that stalls for CHUNK_STALL_S or ends short raise BusUnavailable (retry). The chunks are
    read here, not by `ObjectStore.get`, whose loop waits for the next chunk without end and
    whose subscription outlives a cancelled read."""
    try:
        store = await _bucket(js, bucket)
        try:
            info = await store.get_info(name)
        except (ObjectNotFoundError, NotFoundError):
            raise ObjectMissing(f"object {name} is not in {bucket}") from None
        if info.size is None or info.size > max_bytes:
            raise ObjectTooLarge(f"object {name} is {info.size} bytes, above {max_bytes}")
        if info.is_link() or not info.nuid:
            raise ObjectMissing(f"object {name} in {bucket} is a link or has no chunks")
        data, digest = (b"", _digest(b"")) if info.size == 0 else \
            await _chunks(js, bucket, info.nuid, info.size)
    except BusError:
        raise
    except (NatsError, OSError, TimeoutError) as exc:
        raise BusUnavailable(f"cannot read {name} from {bucket}: {exc}") from exc
    if len(data) != info.size or digest.upper() != (info.digest or "").upper():
        raise BusUnavailable(f"object {name} in {bucket} read back {len(data)} bytes not "
                             f"matching its info ({info.size} bytes); retry")
    return data


async def _chunks(js: JetStreamContext, bucket: str, nuid: str,
                  size: int) -> tuple[bytes, str]:
    """The object's chunks in order and their digest (hashed as they come, so a large
    object never holds the event loop for one long hash), through an ordered consumer
    that is always removed."""
    sub = await js.subscribe(OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=nuid),
                             ordered_consumer=True)
    parts: list[bytes] = []
    hashed = hashlib.sha256()
    got = 0
    try:
        while True:
            msg = await sub.next_msg(timeout=CHUNK_STALL_S)
            parts.append(msg.data)
            hashed.update(msg.data)
            got += len(msg.data)
            if got > size:
                break  # more than the info says: the caller's size check refuses it
            if msg.metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(NatsError, OSError, TimeoutError):
            await sub.unsubscribe()
    return b"".join(parts), _digest_text(hashed)


async def object_exists(js: JetStreamContext, bucket: str, name: str) -> bool:
    """True when `name` is stored in `bucket`."""
    try:
        store = await _bucket(js, bucket)
        await store.get_info(name)
    except (ObjectMissing, ObjectNotFoundError, NotFoundError):
        return False
    except (NatsError, OSError, TimeoutError) as exc:
        raise BusUnavailable(f"cannot look up {name} in {bucket}: {exc}") from exc
    return True


async def list_objects(js: JetStreamContext, bucket: str) -> list[str]:
    """The names of the live (not deleted) objects of `bucket`; [] when it does not exist."""
    try:
        store = await js.object_store(bucket)
        infos = await store.list()
    except (BucketNotFoundError, NotFoundError):
        return []
    except (NatsError, OSError, TimeoutError) as exc:
        raise BusUnavailable(f"cannot list {bucket}: {exc}") from exc
    return sorted({info.name for info in infos if info.name and not info.deleted})


async def delete_object(js: JetStreamContext, bucket: str, name: str) -> bool:
    """Delete `name` (its chunks purged, a deleted marker left as its meta); False when it
    was not there, so a retried delete is a no-op. Bus faults raise BusUnavailable."""
    try:
        store = await _bucket(js, bucket)
        await store.delete(name)
    except (ObjectMissing, ObjectNotFoundError, NotFoundError):
        return False
    except (NatsError, OSError, TimeoutError) as exc:
        raise BusUnavailable(f"cannot delete {name} from {bucket}: {exc}") from exc
    return True


__all__ = ["ObjectMissing", "ObjectTooLarge", "delete_object", "get_object", "list_objects",
           "object_exists", "put_object"]
