"""A scenario's four result files in the JetStream Object Store bucket `forge-artifacts`.

Objects are named `<scenario_id>/<file name>`. `score.json` is written last and read first:
its presence means the set is complete, so a reader never sees half a result. Results are
immutable: a second write of the same score and bundle is a no-op, anything different is
reported to the caller (who refuses it as a conflict).

Retention deletes a set in the opposite order: it first leaves a marker `<scenario_id>/.deleting`,
then removes score.json (from then on the set reads as absent), the scenario's evidence
packs in `forge-evidence`, the other files, and the marker last. A delete cut short leaves
the marker behind, so the next retention run finds it and finishes the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError

from forge.bus.errors import BusUnavailable
from forge.bus.object_buckets import (
    ObjectMissing,
    delete_object,
    get_object,
    list_objects,
    object_exists,
    put_object,
)
from forge.bus.permissions import ARTIFACT_BUCKET, EVIDENCE_BUCKET
from forge_verify.score import SCENARIO_ID_RE

MAX_ARTIFACT_BYTES = 256 << 20
"""The largest result file read back (a bundle of 256 checks' full outputs fits)."""
RESULT_NAMES = ("score.json", "evidence.tar.zst", "evidence.tar.gz", "verdict.sig",
                "verdict.pub")
SCORE = "score.json"
DELETING = ".deleting"
"""The marker of a delete in progress (or cut short) for one scenario."""


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


SIGNATURE_NAMES = ("verdict.sig", "verdict.pub")
"""The result files `forge keys resign` may replace (never score.json or the bundle)."""


async def replace_signature_file(js: JetStreamContext, scenario_id: str, name: str,
                                 data: bytes, *, replicas: int) -> bool:
    """Replace the verdict.sig or verdict.pub of a stored result set (a revoked key's
    verdict signed again); False, nothing written, when the set is gone (deleted)."""
    if name not in SIGNATURE_NAMES:
        raise ValueError(f"{name}: only {' and '.join(SIGNATURE_NAMES)} are replaced")
    if not await object_exists(js, ARTIFACT_BUCKET, object_key(scenario_id, SCORE)):
        return False
    await put_object(js, ARTIFACT_BUCKET, object_key(scenario_id, name), data,
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


async def read_result_file(js: JetStreamContext, scenario_id: str, name: str) -> bytes | None:
    """One result file alone (score.json for retention's dates, one download), or None."""
    try:
        return await get_object(js, ARTIFACT_BUCKET, object_key(scenario_id, name),
                                max_bytes=MAX_ARTIFACT_BYTES)
    except ObjectMissing:
        return None


@dataclass(frozen=True)
class RetentionListing:
    """One retention run's view of both buckets, each listed once."""

    scored: list[str]
    """Ids whose score.json is stored."""
    interrupted: list[str]
    """Ids whose delete was cut short after score.json."""
    packs: dict[str, list[str]]
    """Evidence pack names by scenario id."""


def _packs_by_scenario(names: list[str]) -> dict[str, list[str]]:
    # Evidence packs are named `<scenario_id>.<sha256>` (forge.bus.evidence_pack).
    packs: dict[str, list[str]] = {}
    for name in names:
        sid = name.partition(".")[0]
        if SCENARIO_ID_RE.fullmatch(sid) is not None:
            packs.setdefault(sid, []).append(name)
    return packs


async def retention_listing(js: JetStreamContext) -> RetentionListing:
    """List `forge-artifacts` and `forge-evidence` once each, for a whole retention run."""
    scored: set[str] = set()
    marked: set[str] = set()
    for key in await list_objects(js, ARTIFACT_BUCKET):
        sid, _, name = key.partition("/")
        if SCENARIO_ID_RE.fullmatch(sid) is None:
            continue
        if name == SCORE:
            scored.add(sid)
        elif name == DELETING:
            marked.add(sid)
    packs = _packs_by_scenario(await list_objects(js, EVIDENCE_BUCKET))
    return RetentionListing(sorted(scored), sorted(marked - scored), packs)


async def delete_result_files(js: JetStreamContext, scenario_id: str, *, replicas: int,
                              packs: list[str] | None = None) -> None:
    """Delete a scenario's results and evidence packs (marker first, score.json next, marker
    last); idempotent, so a run that was cut short is finished by calling it again. `packs`:
    the scenario's pack names from the run's `retention_listing` (None: list the bucket)."""
    marker = object_key(scenario_id, DELETING)
    await put_object(js, ARTIFACT_BUCKET, marker, b"retention delete in progress\n",
                     replicas=replicas, description="Forge result artifacts")
    await delete_object(js, ARTIFACT_BUCKET, object_key(scenario_id, SCORE))
    if packs is None:
        packs = _packs_by_scenario(await list_objects(js, EVIDENCE_BUCKET)).get(scenario_id, [])
    for name in packs:
        await delete_object(js, EVIDENCE_BUCKET, name)
    for name in RESULT_NAMES[1:]:
        await delete_object(js, ARTIFACT_BUCKET, object_key(scenario_id, name))
    await delete_object(js, ARTIFACT_BUCKET, marker)


__all__ = ["DELETING", "MAX_ARTIFACT_BYTES", "RetentionListing", "delete_result_files",
           "object_key",
           "read_result_file", "read_result_files", "retention_listing", "scored_ids",
           "write_result_files"]
