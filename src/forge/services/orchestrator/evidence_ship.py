"""Shipping a scenario's evidence to the scoreboard through JetStream, never through disk.

The node owns the scenario's audit log until completion: it appends `scenario.completed`
(with the output hashes), then packs that log prefix and the full check outputs
(`forge.bus.evidence_pack`). A small pack rides inline in the completion event; a larger
one is written beside `completion.json` and put in the Object Store just before the event
is published (again on every retry: the object name is keyed by content, so a second
upload of the same pack is a no-op).
"""

from __future__ import annotations

import base64
from pathlib import Path

from forge.bus.contracts import MAX_EVENT_BYTES, Contract, encode
from forge.bus.evidence_pack import (
    EVIDENCE_BUCKET,
    INLINE_PACK_LIMIT,
    MAX_PACK_BYTES,
    EvidencePack,
    encode_pack,
    object_name,
    pack_size,
)
from forge.bus.object_buckets import put_object
from forge.evidence.artifact_store import PACK_FILE
from forge.services.orchestrator.state import OrchestratorState

_INLINE_SLACK = 64  # the field name and quotes around the inline pack


class PackTooLarge(Exception):
    """The scenario's evidence would make a pack above MAX_PACK_BYTES, which the scoreboard
    refuses: grading fails with this reason rather than a completion being dead-lettered."""


def build_pack(scenario_id: str, audit_log: bytes, evidence_dir: Path,
               recordings: dict[str, bytes] | None = None) -> bytes:
    """The canonical pack of a graded scenario (its audit log prefix, every output file, its
    terminal recordings); PackTooLarge, judged from the output file sizes before they are
    read, above the cap."""
    files = [p for p in sorted(evidence_dir.iterdir()) if p.is_file()]
    sizes = {p.name: p.stat().st_size for p in files}
    casts = recordings or {}
    size = pack_size(scenario_id, len(audit_log), sizes, {k: len(v) for k, v in casts.items()})
    if size > MAX_PACK_BYTES:
        raise PackTooLarge(
            f"evidence pack of {size} bytes ({len(files)} captured streams, "
            f"{sum(sizes.values())} bytes of output) is above the {MAX_PACK_BYTES}-byte "
            "limit; the template's checks capture too much output to be scored")
    outputs = {p.name: p.read_bytes() for p in files}
    return encode_pack(EvidencePack(scenario_id, audit_log, outputs, dict(casts)))


def transport_fields(event_size: int, scenario_id: str, pack: bytes) -> dict[str, object]:
    """The completion event's fields carrying `pack`: inline when it is small and the event
    stays within one message (encoded only then), else an Object Store reference."""
    if len(pack) <= INLINE_PACK_LIMIT and \
            event_size + (len(pack) + 2) // 3 * 4 + _INLINE_SLACK <= MAX_EVENT_BYTES:
        return {"evidence_pack": base64.b64encode(pack).decode("ascii")}
    name = object_name(scenario_id, pack)
    return {"evidence_object": {"name": name, "sha256": name.rsplit(".", 1)[1],
                                "size": len(pack)}}


def encoded_size(event: Contract) -> int:
    """Bytes of an event on the wire (what `transport_fields` adds to)."""
    return len(encode(event))


async def upload_pack(state: OrchestratorState, scenario_dir: Path, name: str) -> None:
    """Put the stored pack in the evidence bucket (BusUnavailable: retried with the publish)."""
    data = await state.blocking((scenario_dir / PACK_FILE).read_bytes)
    js = state.publisher.connection.jetstream()
    await put_object(js, EVIDENCE_BUCKET, name, data, replicas=state.settings.nats_replicas,
                     description="Forge evidence packs too large for a completion event")


__all__ = ["PACK_FILE", "PackTooLarge", "build_pack", "encoded_size", "transport_fields",
           "upload_pack"]
