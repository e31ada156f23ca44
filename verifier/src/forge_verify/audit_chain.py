"""The audit chain format and its verification (standard library + cryptography only).

Each line is canonical JSON `{seq, prev, time, event, data, hash}` where `hash` is the
sha256 of the canonical JSON of the other five fields and `prev` is the previous line's
hash (for seq 0: a value derived from the stream name, so a chain cannot be passed off as
another stream's). A checkpoint is an ordinary line with event `audit.checkpoint` whose
data carries an Ed25519 signature over (stream, seq, prev, time): the signed head. The
latest checkpoint is also kept beside the log, so cutting lines off the end or rewriting
history is detected even though every line would still link up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forge_verify.canonical import CanonicalJSONError, dumps, dumps_file, loads
from forge_verify.keys import Signer, same_text

CHECKPOINT_EVENT = "audit.checkpoint"
GLOBAL_STREAM = "global"
EVENT_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_FIELDS = frozenset({"seq", "prev", "time", "event", "data", "hash"})
_HEX64 = re.compile(r"[0-9a-f]{64}")


def scenario_stream(scenario_id: str) -> str:
    """Stream name of a scenario's audit log."""
    return f"scenario:{scenario_id}"


def genesis_hash(stream: str) -> str:
    """The `prev` of the first entry of `stream`."""
    return hashlib.sha256(b"forge-audit-v1\n" + stream.encode("utf-8")).hexdigest()


def entry_hash(seq: int, prev: str, time: str, event: str, data: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of an entry without its hash."""
    body = {"seq": seq, "prev": prev, "time": time, "event": event, "data": dict(data)}
    return hashlib.sha256(dumps(body)).hexdigest()


def make_line(seq: int, prev: str, time: str, event: str, data: Mapping[str, Any]) -> bytes:
    """One complete audit line (canonical JSON and a newline)."""
    h = entry_hash(seq, prev, time, event, data)
    return dumps_file({"seq": seq, "prev": prev, "time": time, "event": event,
                       "data": dict(data), "hash": h})


def checkpoint_message(stream: str, seq: int, prev: str, time: str) -> bytes:
    """The bytes a checkpoint signature covers."""
    return f"forge-audit-checkpoint-v1\n{stream}\n{seq}\n{prev}\n{time}".encode()


def checkpoint_data(signer: Signer, stream: str, seq: int, prev: str, time: str) -> dict[str, Any]:
    """Data of a checkpoint entry sealing the chain up to `prev`."""
    sig = signer.sign(checkpoint_message(stream, seq, prev, time))
    return {"key_id": signer.key_id, "sig": base64.b64encode(sig).decode("ascii")}


def prefix_through(data: bytes, event: str) -> bytes | None:
    """The chain up to and including the first line whose event is `event` (None: absent).

    Later appends do not change this prefix, so evidence built from it is reproducible
    (a redelivered completion yields the same bundle).
    """
    marker = b'"event":' + dumps(event) + b","
    end = 0
    for line in data.splitlines(keepends=True):
        end += len(line)
        if marker in line and line.endswith(b"\n"):
            try:
                if loads(line).get("event") == event:
                    return data[:end]
            except (CanonicalJSONError, AttributeError):
                return None
    return None


@dataclass
class ChainReport:
    """Outcome of a chain check: every failure in `reasons`, informational `notes`."""

    entries: int = 0
    head: str = ""
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no reason was found."""
        return not self.reasons


def _parse_entry(raw: bytes, where: str) -> dict[str, Any]:
    if not raw:  # said as such, not as invalid JSON: no writer of the log writes one
        raise ValueError(f"{where}: empty line, not an audit entry")
    try:
        obj = loads(raw)
    except CanonicalJSONError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != _FIELDS:
        raise ValueError(f"{where}: not an audit entry (fields {sorted(_FIELDS)})")
    if (not isinstance(obj["seq"], int) or isinstance(obj["seq"], bool)
            or not isinstance(obj["time"], str) or not isinstance(obj["data"], dict)
            or not isinstance(obj["event"], str) or EVENT_RE.fullmatch(obj["event"]) is None
            or not isinstance(obj["prev"], str) or not isinstance(obj["hash"], str)
            or _HEX64.fullmatch(obj["hash"]) is None):
        raise ValueError(f"{where}: malformed audit entry")
    if dumps_file(obj) != raw + b"\n":
        raise ValueError(f"{where}: not in canonical form")
    return obj


def _check_signature(
    entry: dict[str, Any], stream: str, keys: Mapping[str, Ed25519PublicKey] | None,
    unknown_key_is_error: bool, report: ChainReport, where: str,
) -> None:
    data = entry["data"]
    key_id, sig_b64 = data.get("key_id"), data.get("sig")
    if not isinstance(key_id, str) or not isinstance(sig_b64, str):
        report.reasons.append(f"{where}: checkpoint without key_id/sig")
        return
    if keys is None:
        report.notes.append(f"{where}: checkpoint signature not checked (no keys given)")
        return
    key = keys.get(key_id)
    if key is None:
        msg = f"{where}: checkpoint signed by unknown key {key_id}"
        (report.reasons if unknown_key_is_error else report.notes).append(msg)
        return
    try:
        sig = base64.b64decode(sig_b64, validate=True)
        key.verify(sig, checkpoint_message(stream, entry["seq"], entry["prev"], entry["time"]))
    except (InvalidSignature, binascii.Error, ValueError):
        report.reasons.append(f"{where}: checkpoint signature invalid (key {key_id})")


def verify_chain(
    data: bytes,
    *,
    stream: str,
    public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    head: bytes | None = None,
    unknown_key_is_error: bool = True,
) -> ChainReport:
    """Check links, hashes, checkpoint signatures and (if given) the signed head sidecar.

    `public_keys` maps key id to key; `head` is the latest checkpoint line kept beside the
    log. Structural checking stops at the first broken line (later ones cannot be trusted).
    """
    report = ChainReport(head=genesis_hash(stream))
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        report.reasons.append(f"line {len(lines)}: incomplete (no trailing newline: a write "
                              "cut short, by a crash or a full disk)")
        lines.pop()
    prev = report.head
    raw_lines: list[bytes] = []
    for i, raw in enumerate(lines):
        where = f"line {i + 1}"
        try:
            entry = _parse_entry(raw, where)
        except ValueError as exc:
            report.reasons.append(str(exc))
            break
        if entry["seq"] != i:
            report.reasons.append(f"{where}: seq {entry['seq']} where {i} expected "
                                  "(lines removed or reordered)")
            break
        if not same_text(entry["prev"], prev):
            report.reasons.append(f"{where}: prev hash does not match the line before "
                                  "(chain broken or from another stream)")
            break
        expected = entry_hash(i, entry["prev"], entry["time"], entry["event"], entry["data"])
        if not same_text(entry["hash"], expected):
            report.reasons.append(f"{where}: hash does not match its content (rewritten)")
            break
        if entry["event"] == CHECKPOINT_EVENT:
            _check_signature(entry, stream, public_keys, unknown_key_is_error, report, where)
            report.checkpoints += 1
            report.last_checkpoint_seq = i
        prev = entry["hash"]
        raw_lines.append(raw)
        report.entries = i + 1
        report.head = prev
    if head is not None:
        _check_head(head, stream, public_keys, unknown_key_is_error, raw_lines, report)
    if report.ok and report.entries:
        sealed = -1 if report.last_checkpoint_seq is None else report.last_checkpoint_seq
        unsealed = report.entries - 1 - sealed
        if unsealed:
            report.notes.append(f"{unsealed} entries after the last signed checkpoint")
    return report


def _check_head(
    head: bytes, stream: str, keys: Mapping[str, Ed25519PublicKey] | None,
    unknown_key_is_error: bool, raw_lines: list[bytes], report: ChainReport,
) -> None:
    where = "head checkpoint"
    try:
        entry = _parse_entry(head.rstrip(b"\n"), where)
    except ValueError as exc:
        report.reasons.append(str(exc))
        return
    if entry["event"] != CHECKPOINT_EVENT:
        report.reasons.append(f"{where}: not a checkpoint entry")
        return
    _check_signature(entry, stream, keys, unknown_key_is_error, report, where)
    seq = entry["seq"]
    if seq >= len(raw_lines):
        report.reasons.append(
            f"truncated: signed checkpoint covers entry {seq + 1} but only "
            f"{len(raw_lines)} intact entries remain")
    elif not hmac.compare_digest(raw_lines[seq], head.rstrip(b"\n")):
        report.reasons.append(f"rewritten: entry {seq + 1} differs from the signed checkpoint")
