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
    EvidencePack,
    encode_pack,
    object_name,
)
from forge.bus.object_buckets import put_object
from forge.evidence.artifact_store import PACK_FILE
from forge.services.orchestrator.state import OrchestratorState

_INLINE_SLACK = 64  # the field name and quotes around the inline pack


def build_pack(scenario_id: str, audit_log: bytes, evidence_dir: Path) -> bytes:
    """The canonical pack of a graded scenario (its audit log prefix, every output file)."""
    outputs = {p.name: p.read_bytes() for p in sorted(evidence_dir.iterdir()) if p.is_file()}
    return encode_pack(EvidencePack(scenario_id, audit_log, outputs))


def transport_fields(event_size: int, scenario_id: str, pack: bytes) -> dict[str, object]:
    """The completion event's fields carrying `pack`: inline when it is small and the event
    stays within one message, else an Object Store reference."""
    inline = base64.b64encode(pack).decode("ascii")
    if len(pack) <= INLINE_PACK_LIMIT and \
            event_size + len(inline) + _INLINE_SLACK <= MAX_EVENT_BYTES:
        return {"evidence_pack": inline}
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


__all__ = ["PACK_FILE", "build_pack", "encoded_size", "transport_fields", "upload_pack"]
