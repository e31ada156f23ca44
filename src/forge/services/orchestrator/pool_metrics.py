"""Prometheus metrics of the node's warm lab pools, read from `Runtime.pool_report()` at
each scrape: how many labs each pool holds and wants, and what happened to them (claims,
misses, builds, failed builds or claims, labs destroyed under memory pressure or because
the name service came to know their uids), so an operator sees a pool that never fills,
flaps or is off without reading the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from forge.runtime.base import PoolReport

EVENTS = ("claimed", "missed", "built", "failed", "shrunk", "exposed")


class PoolCollector(Collector):
    """Exports the pools of `report()` (None: the node keeps no pools, nothing exported)."""

    def __init__(self, report: Callable[[], PoolReport | None]) -> None:
        self._report = report

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Build the metric families from the runtime's report now."""
        report = self._report()
        if report is None:
            return
        on = GaugeMetricFamily("forge_warm_pool_enabled",
                               "1 when this node may keep warm pools, 0 when they are off "
                               "(the orchestrator's log says why)")
        on.add_metric([], 0.0 if report.off_reason else 1.0)
        ready = GaugeMetricFamily("forge_warm_pool_ready", "Ready labs in the pool",
                                  labels=["pool"])
        size = GaugeMetricFamily("forge_warm_pool_size", "Labs the pool is to hold",
                                 labels=["pool"])
        for name, pool in sorted(report.pools.items()):
            ready.add_metric([name], float(pool.get("ready", 0)))
            size.add_metric([name], float(pool.get("size", 0)))
        events = CounterMetricFamily("forge_warm_pool_labs",
                                     "Pool labs by what happened to them since start",
                                     labels=["event"])
        for event in EVENTS:
            events.add_metric([event], float(report.events.get(event, 0)))
        yield from (on, ready, size, events)


def register_pool_metrics(registry: CollectorRegistry,
                          report: Callable[[], PoolReport | None]) -> PoolCollector:
    """Register a collector of `report` on `registry` and return it."""
    collector = PoolCollector(report)
    registry.register(collector)
    return collector
