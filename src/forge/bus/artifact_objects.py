"""A scenario's four result files in the JetStream Object Store bucket `forge-artifacts`.

Objects are named `<scenario_id>/<file name>`. `score.json` is written last and read first:
its presence means the set is complete, so a reader never sees half a result. Results are
immutable: a second write of the same score and bundle is a no-op, anything different is
reported to the caller (who refuses it as a conflict).
"""

from __future__ import annotations

from collections.abc import Mapping

from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError

from forge.bus.errors import BusUnavailable
from forge.bus.object_buckets import ObjectMissing, get_object, put_object
from forge.bus.permissions import ARTIFACT_BUCKET

MAX_ARTIFACT_BYTES = 256 << 20
"""The largest result file read back (a bundle of 256 checks' full outputs fits)."""
RESULT_NAMES = ("score.json", "evidence.tar.zst", "evidence.tar.gz", "verdict.sig",
                "verdict.pub")
SCORE = "score.json"


def object_key(scenario_id: str, name: str) -> str:
    """`<scenario_id>/<name>`."""
    return f"{scenario_id}/{name}"


async def read_result_files(js: JetStreamContext, scenario_id: str) -> dict[str, bytes] | None:
    """The stored files by name, or None when the scenario has no (complete) results."""
    try:
        score = await get_object(js, ARTIFACT_BUCKET, object_key(scenario_id, SCORE),
                                 max_bytes=MAX_ARTIFACT_BYTES)
    except ObjectMissing:
        return None
    files = {SCORE: score}
    for name in RESULT_NAMES[1:]:
        try:
            files[name] = await get_object(js, ARTIFACT_BUCKET, object_key(scenario_id, name),
                                           max_bytes=MAX_ARTIFACT_BYTES)
        except ObjectMissing:
            continue
    return files


async def write_result_files(js: JetStreamContext, scenario_id: str,
                             files: Mapping[str, bytes], *, replicas: int) -> bool:
    """Store the files, score.json last; False (nothing written) when results exist."""
    if await read_result_files(js, scenario_id) is not None:
        return False
    for name in sorted(files, key=lambda n: n == SCORE):
        await put_object(js, ARTIFACT_BUCKET, object_key(scenario_id, name), files[name],
                         replicas=replicas, description="Forge result artifacts")
    return True


async def scored_ids(js: JetStreamContext) -> dict[str, str]:
    """scenario id -> digest of its score.json, for every stored result set."""
    try:
        store = await js.object_store(ARTIFACT_BUCKET)
        infos = await store.list()
    except (BucketNotFoundError, NotFoundError):
        return {}
    except (NatsError, OSError, TimeoutError) as exc:
        raise BusUnavailable(f"cannot list {ARTIFACT_BUCKET}: {exc}") from exc
    found: dict[str, str] = {}
    for info in infos:
        sid, _, name = (info.name or "").partition("/")
        if name == SCORE and not info.deleted:
            found[sid] = info.digest or ""
    return found


__all__ = ["MAX_ARTIFACT_BYTES", "object_key", "read_result_files", "scored_ids",
           "write_result_files"]
