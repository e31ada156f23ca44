"""The evidence a lab node ships to the scoreboard, so the two share no disk.

A *pack* holds what the scoreboard needs besides the completion event itself: the full
captured check outputs (the event carries at most 16 KiB of each) and the scenario's audit
log up to and including its `scenario.completed` entry. It is canonical JSON (sorted keys,
base64 bytes), so the same evidence always makes the same bytes and the same sha256.

A pack of at most `INLINE_PACK_LIMIT` bytes rides inline in the completion event
(`evidence_pack`, base64); a larger one is put in the JetStream Object Store bucket
`EVIDENCE_BUCKET` under `<scenario_id>.<sha256>` and the event carries only a reference
(`evidence_object`: name, sha256, size). The scoreboard checks the reference against the
event's scenario, the size bound and the digest before it decodes anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forge.bus.permissions import EVIDENCE_BUCKET
from forge.runtime.recording import LAB_CAP_BYTES, MAX_RECORDINGS
from forge.runtime.recording import RECORDING_CAP_BYTES as MAX_RECORDING_BYTES
from forge.templates import dsl_limits as L
from forge_verify.recordings import RECORDING_NAME_PATTERN
from forge_verify.score import SCENARIO_ID_RE

INLINE_PACK_LIMIT = 64 * 1024
"""A pack of at most this many bytes is carried inline (about 86 KiB once base64)."""
MAX_OUTPUT_BYTES = 1 << 20
"""One captured stream at most (the grader's own cap, `forge.grading.runner.MAX_OUTPUT`)."""
MAX_AUDIT_BYTES = 4 << 20
"""A scenario's audit log through `scenario.completed`, at most."""
MAX_PACK_BYTES = 64 << 20
"""The largest pack accepted from the Object Store (checked before it is downloaded)."""
EVIDENCE_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}\.\d{1,4}\.std(out|err)$"
"""A captured stream's file name, `<criterion>.<check index>.stdout|stderr` (also the keys
of a completion event's `evidence`, `forge.bus.contracts.EvidenceName`)."""
MAX_RECORDINGS_BYTES = LAB_CAP_BYTES + MAX_RECORDINGS * 512
"""A lab's recordings together at most: the node's lab cap, plus each one's header and
truncation marker."""
_NAME_RE = re.compile(rf"^({SCENARIO_ID_RE.pattern})\.([0-9a-f]{{64}})$")
_B64 = r"^[A-Za-z0-9+/]*={0,2}$"


class PackError(ValueError):
    """A pack or its reference that cannot be trusted; `code` is stable for failed events."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class _Pack(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1] = 1
    scenario_id: Annotated[str, Field(pattern=f"^{SCENARIO_ID_RE.pattern}$")]
    audit_log: Annotated[str, Field(max_length=MAX_AUDIT_BYTES * 4 // 3 + 4, pattern=_B64)]
    outputs: Annotated[
        dict[Annotated[str, Field(pattern=EVIDENCE_NAME_PATTERN)],
             Annotated[str, Field(max_length=MAX_OUTPUT_BYTES * 4 // 3 + 4, pattern=_B64)]],
        Field(max_length=2 * L.MAX_CHECKS_TOTAL)]
    # Terminal recordings (asciicast v2) by file name; absent in packs without any.
    recordings: Annotated[
        dict[Annotated[str, Field(pattern=RECORDING_NAME_PATTERN)],
             Annotated[str, Field(max_length=MAX_RECORDING_BYTES * 4 // 3 + 4, pattern=_B64)]],
        Field(max_length=MAX_RECORDINGS)] = {}


@dataclass(frozen=True)
class EvidencePack:
    """Decoded evidence of one scenario: its audit log prefix, full outputs and terminal
    recordings by name."""

    scenario_id: str
    audit_log: bytes
    outputs: dict[str, bytes]
    recordings: dict[str, bytes] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PackError("evidence_invalid", f"{what}: not base64") from None


def encode_pack(pack: EvidencePack) -> bytes:
    """Canonical bytes of a pack (the same evidence always gives the same sha256)."""
    body = {"v": 1, "scenario_id": pack.scenario_id, "audit_log": _b64(pack.audit_log),
            "outputs": {k: _b64(v) for k, v in sorted(pack.outputs.items())}}
    if pack.recordings:  # a pack without recordings keeps the bytes it always had
        body["recordings"] = {k: _b64(v) for k, v in sorted(pack.recordings.items())}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def _b64_len(size: int) -> int:
    return (size + 2) // 3 * 4


def _map_size(sizes: dict[str, int]) -> int:
    """Encoded bytes of a name -> base64 map's entries (without its braces)."""
    return (sum(len(name) + _b64_len(size) + 5 for name, size in sizes.items())
            + max(0, len(sizes) - 1))


def pack_size(scenario_id: str, audit_bytes: int, output_bytes: dict[str, int],
              recording_bytes: dict[str, int] | None = None) -> int:
    """Exactly `len(encode_pack(...))` for a pack of these sizes, known before anything is
    read or encoded (so a node can refuse a pack above MAX_PACK_BYTES up front)."""
    size = (len('{"audit_log":"","outputs":{},"scenario_id":"","v":1}') + _b64_len(audit_bytes)
            + _map_size(output_bytes) + len(scenario_id))
    if recording_bytes:
        size += len(',"recordings":{}') + _map_size(recording_bytes)
    return size


def decode_pack(raw: bytes, scenario_id: str) -> EvidencePack:
    """The pack in `raw`, which must be this scenario's; PackError saying why not."""
    if len(raw) > MAX_PACK_BYTES:
        raise PackError("evidence_too_large", f"pack: {len(raw)} bytes, above {MAX_PACK_BYTES}")
    try:
        model = _Pack.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "(body)"
                         for e in exc.errors(include_url=False, include_input=False)})
        raise PackError("evidence_invalid", "pack: invalid " + ", ".join(fields[:5])) from None
    if not hmac.compare_digest(model.scenario_id, scenario_id):
        raise PackError("evidence_wrong_scenario",
                        "pack: carries the evidence of another scenario")
    outputs = {k: _unb64(v, f"outputs.{k}") for k, v in model.outputs.items()}
    if any(len(v) > MAX_OUTPUT_BYTES for v in outputs.values()):
        raise PackError("evidence_too_large", "outputs: a stream is larger than a grader "
                                              "capture")
    recordings = {k: _unb64(v, f"recordings.{k}") for k, v in model.recordings.items()}
    if any(len(v) > MAX_RECORDING_BYTES for v in recordings.values()) or \
            sum(len(v) for v in recordings.values()) > MAX_RECORDINGS_BYTES:
        raise PackError("evidence_too_large", "recordings: larger than a lab's recordings")
    audit = _unb64(model.audit_log, "audit_log")
    if len(audit) > MAX_AUDIT_BYTES:
        raise PackError("evidence_too_large", "audit_log: larger than a scenario's log")
    return EvidencePack(model.scenario_id, audit, outputs, recordings)


def object_name(scenario_id: str, data: bytes) -> str:
    """`<scenario_id>.<sha256>`: the Object Store name of a pack (keyed by scenario and
    content, so a retried upload is the same object and two scenarios never collide)."""
    return f"{scenario_id}.{hashlib.sha256(data).hexdigest()}"


def check_reference(name: str, sha256: str, size: int, scenario_id: str) -> None:
    """A pack reference must name this scenario and its own digest, within the size bound."""
    match = _NAME_RE.fullmatch(name)
    if match is None or not hmac.compare_digest(match.group(1), scenario_id):
        raise PackError("evidence_wrong_scenario",
                        "evidence_object.name: not an object of this scenario")
    if not hmac.compare_digest(match.group(2), sha256):
        raise PackError("evidence_hash_mismatch",
                        "evidence_object.name: does not carry the object's sha256")
    if size > MAX_PACK_BYTES:
        raise PackError("evidence_too_large",
                        f"evidence_object.size: {size} bytes, above {MAX_PACK_BYTES}")


def check_bytes(data: bytes, sha256: str, size: int) -> None:
    """Downloaded pack bytes must have exactly the size and sha256 the event names."""
    if len(data) != size:
        raise PackError("evidence_size_mismatch",
                        f"evidence_object: {len(data)} bytes, the event says {size}")
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), sha256):
        raise PackError("evidence_hash_mismatch",
                        "evidence_object: sha256 differs from the event's")


__all__ = ["EVIDENCE_BUCKET", "EVIDENCE_NAME_PATTERN", "INLINE_PACK_LIMIT", "MAX_PACK_BYTES",
           "EvidencePack", "PackError", "check_bytes", "check_reference", "decode_pack",
           "encode_pack", "object_name", "pack_size"]
