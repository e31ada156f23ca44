"""Scheduled purges of what only grows: expired replay jtis, old rate windows, resolved
idempotency records, released quota slots. Each service registers the tables it owns.

A pass runs each job in the database's writer thread, counts what it deleted in
``forge_housekeeping_purged_total{service,table}``, records the time of the last good pass
in ``forge_housekeeping_last_success_timestamp_seconds`` and a failing job in
``forge_housekeeping_failures_total`` (the others still run).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from forge.services.common.app import ServiceContext

log = logging.getLogger("forge.housekeeping")
Job = Callable[[datetime], int]
DEFAULT_INTERVAL_S = 300.0


class Housekeeping:
    """The purge jobs of one service and their metrics."""

    def __init__(self, ctx: ServiceContext, jobs: dict[str, Job]) -> None:
        self.ctx = ctx
        self.jobs = dict(jobs)
        registry = ctx.metrics.registry
        self.purged = Counter("forge_housekeeping_purged", "Rows deleted by housekeeping",
                              ["service", "table"], registry=registry)
        self.failures = Counter("forge_housekeeping_failures", "Housekeeping jobs that failed",
                                ["service", "table"], registry=registry)
        self.last = Gauge("forge_housekeeping_last_success_timestamp_seconds",
                          "When the last housekeeping pass without failures ended",
                          ["service"], registry=registry)

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """One pass over every job; table -> rows deleted (a failed job is left out)."""
        when = now or datetime.now(UTC)
        done: dict[str, int] = {}
        for table, job in self.jobs.items():
            try:
                done[table] = await self.ctx.db.write(job, when)
            except Exception:
                log.exception("housekeeping of %s failed", table)
                self.failures.labels(self.ctx.name, table).inc()
                continue
            self.purged.labels(self.ctx.name, table).inc(done[table])
        if len(done) == len(self.jobs):
            self.last.labels(self.ctx.name).set(time.time())
        if any(done.values()):
            log.info("housekeeping purged %s", done)
        return done

    async def run(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        """Background task: a pass now and every ``interval_s`` seconds until cancelled."""
        while True:
            await self.run_once()
            await asyncio.sleep(interval_s)
