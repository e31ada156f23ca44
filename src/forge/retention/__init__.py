"""Retention of scenario results: per-scenario expiry, investigation holds, audited cleanup."""

from forge.retention.cleanup import CleanupItem, CleanupReport, RetentionAuditError, cleanup
from forge.retention.holds import Hold, HoldStore

__all__ = ["CleanupItem", "CleanupReport", "Hold", "HoldStore", "RetentionAuditError", "cleanup"]
