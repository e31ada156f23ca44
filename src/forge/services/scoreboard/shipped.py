"""Evidence the node shipped with a completion event: fetched, bounded, verified.

The scoreboard shares no disk with the lab node. What it needs besides the event (full
check outputs, the scenario's audit log through `scenario.completed`) arrives inline in the
event or as an Object Store object the event names. Before anything is used:

* the reference must name this scenario and its own sha256, within the size bound, and the
  downloaded bytes must have exactly that size and sha256;
* the pack must say it is this scenario's;
* the audit log must be an intact hash chain of stream `scenario:<id>` ending with its
  first `scenario.completed` entry (whose evidence hashes and values digest are then held
  against the event by `event_intake.check_recorded_completion`).

Any failure is a `CompletionRefused` with a stable code: a failed event with the reason.
"""

from __future__ import annotations

import base64
import binascii

from nats.js.client import JetStreamContext

from forge.bus.contracts import ScenarioCompletedV1
from forge.bus.evidence_pack import (
    EVIDENCE_BUCKET,
    INLINE_PACK_LIMIT,
    MAX_PACK_BYTES,
    EvidencePack,
    PackError,
    check_bytes,
    check_reference,
    decode_pack,
)
from forge.bus.object_buckets import ObjectMissing, ObjectTooLarge, get_object
from forge.services.scoreboard.refused import CompletionRefused
from forge_verify.audit_chain import prefix_through, scenario_stream, verify_chain

COMPLETED_EVENT = "scenario.completed"


def _refused(exc: PackError) -> CompletionRefused:
    return CompletionRefused(exc.code, str(exc).split(": ", 1)[-1])


def inline_pack(event: ScenarioCompletedV1) -> EvidencePack | None:
    """The pack carried inline by the event (None: it carries none inline)."""
    if event.evidence_pack is None:
        return None
    try:
        raw = base64.b64decode(event.evidence_pack, validate=True)
    except (binascii.Error, ValueError):
        raise CompletionRefused("evidence_invalid", "evidence_pack: not base64") from None
    if len(raw) > INLINE_PACK_LIMIT:
        raise CompletionRefused("evidence_too_large",
                                f"evidence_pack: {len(raw)} bytes, above {INLINE_PACK_LIMIT}")
    try:
        return decode_pack(raw, event.scenario_id)
    except PackError as exc:
        raise _refused(exc) from None


async def fetch_pack(js: JetStreamContext | None, event: ScenarioCompletedV1
                     ) -> EvidencePack | None:
    """The event's evidence pack, inline or from the Object Store, verified against the
    event's reference; None for an event that carries none (published before packs).

    CompletionRefused for anything that cannot be trusted; BusUnavailable (retry) when the
    bus cannot be read."""
    ref = event.evidence_object
    if ref is not None and event.evidence_pack is not None:
        raise CompletionRefused("evidence_invalid",
                                "evidence_pack and evidence_object: give one, not both")
    if ref is None:
        return inline_pack(event)
    try:
        check_reference(ref.name, ref.sha256, ref.size, event.scenario_id)
    except PackError as exc:
        raise _refused(exc) from None
    if js is None:
        raise CompletionRefused("evidence_unreachable",
                                "evidence_object: this scoreboard has no bus to read it from")
    try:
        data = await get_object(js, EVIDENCE_BUCKET, ref.name, max_bytes=min(ref.size,
                                                                              MAX_PACK_BYTES))
    except ObjectMissing as exc:
        raise CompletionRefused("evidence_missing", f"evidence_object: {exc}") from None
    except ObjectTooLarge as exc:
        raise CompletionRefused("evidence_too_large", f"evidence_object: {exc}") from None
    try:
        check_bytes(data, ref.sha256, ref.size)
        return decode_pack(data, event.scenario_id)
    except PackError as exc:
        raise _refused(exc) from None


def shipped_audit_log(pack: EvidencePack) -> bytes:
    """The pack's audit log, once it is an intact chain of this scenario's stream that ends
    with its `scenario.completed` entry."""
    data = pack.audit_log
    report = verify_chain(data, stream=scenario_stream(pack.scenario_id), public_keys=None,
                          unknown_key_is_error=False)
    if report.reasons:
        raise CompletionRefused("audit_log_invalid",
                                f"audit log: {report.reasons[0][:300]}")
    if not data or prefix_through(data, COMPLETED_EVENT) != data:
        raise CompletionRefused("audit_log_invalid",
                                f"audit log: does not end with its {COMPLETED_EVENT} entry")
    return data


__all__ = ["fetch_pack", "inline_pack", "shipped_audit_log"]
