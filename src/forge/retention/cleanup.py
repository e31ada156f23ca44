"""`forge retention cleanup`: delete results older than each scenario's own retention.

A scenario's results expire at `completed_at + retention_days` (both from its score.json,
i.e. from the verified ET). Expired results are deleted unless the scenario is under an
investigation hold: the results directory is first renamed to a tombstone (so it never
looks complete while half deleted), then the raw evidence files, the stored completion
payload and the tombstone are removed. The scenario's audit log stays. Every deletion and
every failure goes to the global audit log; a failing item does not stop the run.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from forge.audit.log import AuditError, AuditLog, global_log
from forge.retention.holds import HoldError, HoldStore
from forge_verify.keys import Signer
from forge_verify.score import SCENARIO_ID_RE

TOMBSTONE_PREFIX = ".deleting-"
RAW_EVIDENCE = ("evidence", "completion.json")


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
        doc = json.loads(score_json.read_bytes())
    except OSError as exc:
        raise ValueError(f"score.json: unreadable ({exc.strerror})") from None
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


def _sweep_tombstones(scenario_dir: Path) -> None:
    for tomb in scenario_dir.glob(TOMBSTONE_PREFIX + "*"):
        shutil.rmtree(tomb, ignore_errors=True)


def delete_results(scenario_dir: Path) -> None:
    """Remove a scenario's results and raw evidence; the results vanish in one rename."""
    tomb = scenario_dir / f"{TOMBSTONE_PREFIX}{uuid.uuid4().hex}"
    os.rename(scenario_dir / "results", tomb)
    for name in RAW_EVIDENCE:
        path = scenario_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    shutil.rmtree(tomb)


def _candidates(storage_root: Path) -> list[Path]:
    root = storage_root / "scenarios"
    try:
        entries = sorted(root.iterdir())
    except FileNotFoundError:
        return []
    return [e for e in entries if SCENARIO_ID_RE.fullmatch(e.name) and (e / "results").is_dir()]


def cleanup(
    storage_root: Path,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    signer: Signer | None = None,
    deleter: Callable[[Path], None] = delete_results,
) -> CleanupReport:
    """Apply retention to every scenario with results; a single item never stops the run.

    Raises RetentionAuditError (after the deletion it could not record) when the global
    audit log cannot be written, so nothing more is deleted unaudited.
    """
    moment = now or datetime.now(UTC)
    report = CleanupReport(dry_run=dry_run, now=_iso(moment))
    audit = global_log(storage_root, signer=signer)
    try:
        held = HoldStore(storage_root).held_ids()
    except HoldError as exc:
        # Without the holds we cannot know what must be kept: delete nothing.
        report.items.append(CleanupItem("-", "failed", None, str(exc)))
        return report
    for scenario_dir in _candidates(storage_root):
        sid = scenario_dir.name
        try:
            expires = expiry_of(scenario_dir / "results" / "score.json")
        except ValueError as exc:
            report.items.append(CleanupItem(sid, "failed", None, str(exc)))
            continue
        expires_at = _iso(expires)
        if moment < expires:
            report.items.append(CleanupItem(sid, "kept", expires_at))
            continue
        if sid in held:
            report.items.append(CleanupItem(sid, "held", expires_at, "investigation hold"))
            continue
        if dry_run:
            report.items.append(CleanupItem(sid, "would_delete", expires_at))
            continue
        try:
            _sweep_tombstones(scenario_dir)
            deleter(scenario_dir)
        except OSError as exc:
            item = CleanupItem(sid, "failed", expires_at,
                               f"delete failed: {exc.strerror or exc}")
            report.items.append(item)
            _audit(audit, "retention.failed", item)
            continue
        item = CleanupItem(sid, "deleted", expires_at)
        report.items.append(item)
        _audit(audit, "retention.deleted", item)
    return report


def _audit(audit: AuditLog, event: str, item: CleanupItem) -> None:
    try:
        audit.append(event, {"scenario_id": item.scenario_id, "expired_at": item.expires_at,
                             "reason": item.reason})
    except (AuditError, OSError) as exc:
        raise RetentionAuditError(f"audit log unwritable; retention stopped: {exc}") from exc
