"""How many copies JetStream keeps: the one place streams and buckets get their replicas.

On a NATS cluster each stream, KV bucket and Object Store bucket is a raft group of
`replicas` servers; with 3 (or 5) the data survives the loss of 1 (or 2) of them. Every
stream or bucket Forge creates goes through here, so `FORGE_NATS_REPLICAS` governs all of
them: `forge_streams()` for the event streams (created by `ensure_streams`), `ensure_kv()`
and `ensure_object_store()` for buckets. Durable consumers inherit their stream's replica
count (their config leaves `num_replicas` at 0), so they follow it too. An existing stream
or bucket with another count is scaled by a stream update, which JetStream supports; when
the server refuses (e.g. fewer servers than replicas) the error says so and names the
setting.
"""

from __future__ import annotations

import dataclasses

from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from forge.bus.errors import BusError
from forge.bus.subjects import FORGE_STREAMS, StreamSpec, check_name

VALID_REPLICAS: tuple[int, ...] = (1, 3, 5)
REPLICAS_VAR = "FORGE_NATS_REPLICAS"
_KV_STREAM = "KV_{bucket}"
_OBJ_STREAM = "OBJ_{bucket}"


def check_replicas(replicas: int) -> int:
    """Return `replicas` if it is 1, 3 or 5 (an odd raft group), else raise ValueError."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) \
            or replicas not in VALID_REPLICAS:
        raise ValueError(f"replicas: must be one of {VALID_REPLICAS} ({REPLICAS_VAR}), "
                         f"got {replicas!r}")
    return replicas


def forge_streams(replicas: int = 1,
                  specs: tuple[StreamSpec, ...] = FORGE_STREAMS) -> tuple[StreamSpec, ...]:
    """The Forge stream specs with `replicas` copies each (what services pass as `streams`)."""
    check_replicas(replicas)
    return tuple(dataclasses.replace(spec, replicas=replicas) for spec in specs)


def _refusal(what: str, replicas: int, exc: APIError) -> BusError:
    return BusError(f"cannot give {what} {replicas} replica(s): {exc.description} "
                    f"(check {REPLICAS_VAR} against the number of NATS servers)")


async def _scale(js: JetStreamContext, stream: str, what: str, replicas: int) -> bool:
    """Bring the stream behind a bucket to `replicas`; True if it was changed."""
    info = await js.stream_info(stream)
    if info.config.num_replicas == replicas:
        return False
    try:
        await js.update_stream(dataclasses.replace(info.config, num_replicas=replicas))
    except APIError as exc:
        raise _refusal(what, replicas, exc) from exc
    return True


async def ensure_kv(
    js: JetStreamContext, bucket: str, *, replicas: int, ttl: float | None = None,
    history: int = 1, max_bytes: int = -1, description: str = "",
) -> KeyValue:
    """A KV bucket with `replicas` copies (`ttl`: seconds a key lives; leases, heartbeats).

    Created when missing; an existing bucket is scaled to `replicas`. Safe when several
    processes call it at once.
    """
    check_name(bucket, "bucket")
    check_replicas(replicas)
    if ttl is not None and ttl <= 0:
        raise ValueError("ttl: must be > 0 seconds")
    try:
        await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        config = api.KeyValueConfig(bucket=bucket, description=description or None,
                                    history=history, ttl=ttl, max_bytes=max_bytes,
                                    replicas=replicas, storage=api.StorageType.FILE)
        try:
            return await js.create_key_value(config=config)
        except APIError as exc:
            if exc.err_code != 10058:  # stream name in use: another process made it
                raise _refusal(f"KV bucket {bucket}", replicas, exc) from exc
    await _scale(js, _KV_STREAM.format(bucket=bucket), f"KV bucket {bucket}", replicas)
    return await js.key_value(bucket)


async def ensure_object_store(
    js: JetStreamContext, bucket: str, *, replicas: int, max_bytes: int = -1,
    ttl: float | None = None, description: str = "",
) -> ObjectStore:
    """An Object Store bucket with `replicas` copies (large evidence, artifacts).

    Created when missing; an existing bucket is scaled to `replicas`.
    """
    check_name(bucket, "bucket")
    check_replicas(replicas)
    try:
        await js.object_store(bucket)
    except (BucketNotFoundError, NotFoundError):
        config = api.ObjectStoreConfig(bucket=bucket, description=description or None,
                                       max_bytes=max_bytes, ttl=ttl, replicas=replicas,
                                       storage=api.StorageType.FILE)
        try:
            return await js.create_object_store(bucket, config=config)
        except APIError as exc:
            if exc.err_code != 10058:
                raise _refusal(f"Object Store bucket {bucket}", replicas, exc) from exc
    await _scale(js, _OBJ_STREAM.format(bucket=bucket), f"Object Store bucket {bucket}",
                 replicas)
    return await js.object_store(bucket)
