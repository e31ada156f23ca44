"""`forge retention cleanup`: delete results older than each scenario's own retention.

A scenario's results expire at `completed_at + retention_days` (both from its score.json,
i.e. from the verified ET). Expired results are deleted unless the scenario is under an
investigation hold, through the artifact store the install uses (`FORGE_ARTIFACT_STORE`):

* filesystem: the results directory is first renamed to a tombstone (so it never looks
  complete while half deleted), then the raw evidence files, the stored completion payload
  and the tombstone are removed. The scenario's audit log stays.
* jetstream: the four objects in `forge-artifacts` and the scenario's evidence packs in
  `forge-evidence` (score.json goes first, so the set never reads as complete while half
  deleted; a delete cut short is finished by the next run).

Every deletion and every failure goes to the global audit log; a failing item does not stop
the run. Evidence is deleted only with expired results, so a completion that is not yet
expired (or never scored) can still be reprocessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from forge.audit.log import AuditError, AuditLog, global_log
from forge.bus.errors import BusError
from forge.evidence.artifact_store import (
    RAW_EVIDENCE,
    TOMBSTONE_PREFIX,
    ArtifactStore,
    FilesystemArtifactStore,
    delete_results,
)
from forge.retention.holds import HoldError, HoldStore
from forge_verify.keys import Signer

INTERRUPTED = "finished an interrupted delete"


class RetentionAuditError(Exception):
    """A deletion could not be audited; the run stops rather than delete unaudited."""


@dataclass(frozen=True)
class CleanupItem:
    """The decision for one scenario with results."""

    scenario_id: str
    action: str  # deleted | would_delete | held | kept | failed
    expires_at: str | None
    reason: str = ""


@dataclass
class CleanupReport:
    """Everything one run decided; `failed` items make the CLI exit non-zero."""

    dry_run: bool
    now: str
    items: list[CleanupItem] = field(default_factory=list)

    def count(self, action: str) -> int:
        """Number of items with `action`."""
        return sum(1 for i in self.items if i.action == action)

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return self.count("failed") == 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form with counts per action."""
        actions = ("deleted", "would_delete", "held", "kept", "failed")
        return {"dry_run": self.dry_run, "now": self.now, "ok": self.ok,
                "counts": {a: self.count(a) for a in actions},
                "items": [asdict(i) for i in self.items]}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry_of(score_json: Path) -> datetime:
    """`completed_at + retention_days` of a stored score.json; ValueError naming the field."""
    try:
        raw = score_json.read_bytes()
    except OSError as exc:
        raise ValueError(f"score.json: unreadable ({exc.strerror})") from None
    return expiry_from(raw)


def expiry_from(score_json: bytes) -> datetime:
    """`completed_at + retention_days` of score.json's bytes; ValueError naming the field."""
    try:
        doc = json.loads(score_json)
    except ValueError:
        raise ValueError("score.json: not valid JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("score.json: not an object")
    days = doc.get("retention_days")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError("score.json: retention_days missing or invalid")
    raw = doc.get("completed_at")
    try:
        completed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("score.json: completed_at missing or invalid") from None
    if completed.tzinfo is None:
        raise ValueError("score.json: completed_at has no timezone")
    return completed + timedelta(days=days)


def cleanup(
    storage_root: Path,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    signer: Signer | None = None,
    deleter: Callable[[Path], None] = delete_results,
    store: ArtifactStore | None = None,
) -> CleanupReport:
    """Apply retention to every scenario with results in `store` (default: the filesystem
    store under `storage_root`, removing with `deleter`); a single item never stops the run.

    Holds and the global audit log always live under `storage_root`. Raises
    RetentionAuditError (after the deletion it could not record) when the audit log cannot
    be written, so nothing more is deleted unaudited.
    """
    moment = now or datetime.now(UTC)
    report = CleanupReport(dry_run=dry_run, now=_iso(moment))
    audit = global_log(storage_root, signer=signer)
    results = store if store is not None else FilesystemArtifactStore(storage_root, deleter)
    try:
        held = HoldStore(storage_root).held_ids()
        candidates = results.retention_ids()
        interrupted = results.interrupted_deletes()
    except (HoldError, OSError, BusError) as exc:
        # Without the holds (or the list of results) we cannot decide: delete nothing.
        report.items.append(CleanupItem("-", "failed", None, str(exc)))
        return report
    for sid in interrupted:  # its expiry was judged when the delete began
        if sid in held:
            report.items.append(CleanupItem(sid, "held", None, "investigation hold"))
        elif dry_run:
            report.items.append(CleanupItem(sid, "would_delete", None, INTERRUPTED))
        else:
            _delete(results, audit, report, sid, None, INTERRUPTED)
    for sid in candidates:
        try:
            score = results.read_score(sid)
            if score is None:
                raise ValueError("score.json: missing or unreadable")
            expires = expiry_from(score)
        except (OSError, BusError) as exc:
            report.items.append(CleanupItem(sid, "failed", None,
                                            f"score.json: unreadable ({exc})"))
            continue
        except ValueError as exc:
            report.items.append(CleanupItem(sid, "failed", None, str(exc)))
            continue
        expires_at = _iso(expires)
        if moment < expires:
            report.items.append(CleanupItem(sid, "kept", expires_at))
        elif sid in held:
            report.items.append(CleanupItem(sid, "held", expires_at, "investigation hold"))
        elif dry_run:
            report.items.append(CleanupItem(sid, "would_delete", expires_at))
        else:
            _delete(results, audit, report, sid, expires_at, "")
    return report


def _delete(results: ArtifactStore, audit: AuditLog, report: CleanupReport, sid: str,
            expires_at: str | None, reason: str) -> None:
    try:
        results.delete(sid)
    except (OSError, BusError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        item = CleanupItem(sid, "failed", expires_at, f"delete failed: {detail}")
        report.items.append(item)
        _audit(audit, "retention.failed", item)
        return
    item = CleanupItem(sid, "deleted", expires_at, reason)
    report.items.append(item)
    _audit(audit, "retention.deleted", item)


def _audit(audit: AuditLog, event: str, item: CleanupItem) -> None:
    try:
        audit.append(event, {"scenario_id": item.scenario_id, "expired_at": item.expires_at,
                             "reason": item.reason})
    except (AuditError, OSError) as exc:
        raise RetentionAuditError(f"audit log unwritable; retention stopped: {exc}") from exc


__all__ = ["INTERRUPTED", "RAW_EVIDENCE", "TOMBSTONE_PREFIX", "CleanupItem", "CleanupReport",
           "RetentionAuditError", "cleanup", "delete_results", "expiry_from", "expiry_of"]
