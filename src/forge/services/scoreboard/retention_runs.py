"""The scoreboard applies result retention by itself: every FORGE_RETENTION_INTERVAL_S
(default an hour; 0 turns it off) it runs what `forge retention cleanup` runs, on the
results it stores, so the "results kept N days" a plan promises holds without a cron job.

A run deletes the results (and evidence packs) of every scenario past its
`retention_days`, except those on an investigation hold, and records each deletion in the
signed audit log under STORAGE_ROOT; an audit log it cannot write stops the run. Counts
go to `forge_retention_results_total{action}`, the time of the last good run to
`forge_retention_last_success_timestamp_seconds`, a failed run to
`forge_retention_failures_total`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from forge.evidence.artifact_store import ArtifactStore
from forge.retention.cleanup import CleanupReport, RetentionAuditError, cleanup
from forge.signing.keystore import SigningKeyring

log = logging.getLogger("forge.scoreboard.retention")
FIRST_RUN_DELAY_S = 60.0  # after start: not while the service is catching up
ACTIONS = ("deleted", "held", "failed")


class RetentionRuns:
    """Periodic retention over one scoreboard's result store."""

    def __init__(self, storage_root: Path, store: ArtifactStore, keyring: SigningKeyring,
                 registry: CollectorRegistry) -> None:
        self.storage_root = storage_root
        self.store = store
        self.keyring = keyring
        self.results = Counter("forge_retention_results", "Expired results by what retention "
                               "did with them", ["action"], registry=registry)
        self.failures = Counter("forge_retention_failures",
                                "Retention runs stopped by an error", registry=registry)
        self.last = Gauge("forge_retention_last_success_timestamp_seconds",
                          "When the last retention run without a failed item ended",
                          registry=registry)

    def run_once(self) -> CleanupReport | None:
        """One run (blocking); None when it stopped early (logged, counted)."""
        signer = self.keyring.current_or_none()
        try:
            report = cleanup(self.storage_root, signer=signer, store=self.store)
        except RetentionAuditError as exc:
            log.error("retention stopped: %s", exc)
            self.failures.inc()
            return None
        except Exception:
            log.exception("retention run failed")
            self.failures.inc()
            return None
        for action in ACTIONS:
            self.results.labels(action).inc(report.count(action))
        if report.ok:
            self.last.set(time.time())
        if report.count("deleted") or not report.ok:
            log.info("retention: %s", {a: report.count(a) for a in ACTIONS})
        for item in report.items:
            if item.action == "failed":
                log.warning("retention of %s failed: %s", item.scenario_id, item.reason)
        return report

    async def run(self, interval_s: float) -> None:
        """Run every `interval_s` seconds, the first time FIRST_RUN_DELAY_S after start (or
        `interval_s`, when shorter)."""
        await asyncio.sleep(min(FIRST_RUN_DELAY_S, interval_s))
        while True:
            await asyncio.to_thread(self.run_once)
            await asyncio.sleep(interval_s)
