"""Prometheus metrics for bus subscribers, read from `DurableConsumer.status()` per scrape.

A service calls `register_consumer_metrics(registry, lambda: [consumer, ...])` once; the
callable is asked at every scrape, so consumers replaced by a restart are still reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from forge.bus.consumer import DurableConsumer

_OUTCOMES = ("delivered", "acked", "failed", "retried", "dead_lettered")


class ConsumerCollector(Collector):
    """Exports connection state, counters and backlog of each consumer, labelled by durable."""

    def __init__(self, consumers: Callable[[], Iterable[DurableConsumer]]) -> None:
        self._consumers = consumers

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Build the metric families from the consumers' current status."""
        connected = GaugeMetricFamily(
            "forge_bus_consumer_connected",
            "1 when the subscriber is connected to NATS and bound to its durable consumer",
            labels=["durable"],
        )
        pending = GaugeMetricFamily(
            "forge_bus_consumer_pending",
            "Messages not yet delivered to the durable consumer (num_pending)",
            labels=["durable"],
        )
        ack_pending = GaugeMetricFamily(
            "forge_bus_consumer_ack_pending",
            "Messages delivered but not yet acknowledged",
            labels=["durable"],
        )
        last = GaugeMetricFamily(
            "forge_bus_consumer_last_message_timestamp_seconds",
            "Unix time of the last delivered message",
            labels=["durable"],
        )
        messages = CounterMetricFamily(
            "forge_bus_consumer_messages",
            "Messages handled by this process, by outcome",
            labels=["durable", "outcome"],
        )
        reconnects = CounterMetricFamily(
            "forge_bus_consumer_reconnects",
            "Automatic reconnections to NATS",
            labels=["durable"],
        )
        restarts = CounterMetricFamily(
            "forge_bus_consumer_restarts",
            "Operator-requested subscriber restarts",
            labels=["durable"],
        )
        for consumer in self._consumers():
            st = consumer.status()
            durable = st["durable"]
            connected.add_metric([durable], 1.0 if st["connected"] else 0.0)
            if st["pending"] is not None:
                pending.add_metric([durable], float(st["pending"]))
            if st["ack_pending"] is not None:
                ack_pending.add_metric([durable], float(st["ack_pending"]))
            if consumer.last_message_ts is not None:
                last.add_metric([durable], consumer.last_message_ts)
            for outcome in _OUTCOMES:
                messages.add_metric([durable, outcome], float(st[outcome]))  # type: ignore[literal-required]
            reconnects.add_metric([durable], float(st["reconnects"]))
            restarts.add_metric([durable], float(st["restarts"]))
        yield from (connected, pending, ack_pending, last, messages, reconnects, restarts)


def register_consumer_metrics(
    registry: CollectorRegistry, consumers: Callable[[], Iterable[DurableConsumer]]
) -> ConsumerCollector:
    """Register a collector for `consumers` on `registry` and return it."""
    collector = ConsumerCollector(consumers)
    registry.register(collector)
    return collector
