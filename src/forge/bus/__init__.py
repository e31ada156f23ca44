"""Forge's event bus: NATS JetStream streams, confirmed publishing and durable consumers.

Services use three things: `Publisher.publish(subject, data, msg_id=...)`,
`DurableConsumer(url, durable=..., subjects=..., handler=..., on_dead_letter=...)`, and the
subject constants in `forge.bus.subjects`. `NatsServer` runs an embedded server for
`forge up`, dev and tests.
"""

from forge.bus.cluster import NatsCluster
from forge.bus.connection import BusConnection
from forge.bus.consumer import ConsumerStatus, DurableConsumer
from forge.bus.consumer_metrics import register_consumer_metrics
from forge.bus.dial import ConnectionState, connect, redact_url
from forge.bus.errors import (
    BusError,
    BusOutcomeUnknown,
    BusUnavailable,
    NatsServerError,
    NatsServerNotFound,
    Reject,
    RetryLater,
)
from forge.bus.events import DeadLetterHook, Event, Handler, encode_event
from forge.bus.nats_binary import find_nats_server
from forge.bus.publisher import PublishAck, Publisher
from forge.bus.server import NatsServer
from forge.bus.subjects import ensure_streams

__all__ = [
    "BusConnection",
    "BusError",
    "BusOutcomeUnknown",
    "BusUnavailable",
    "ConnectionState",
    "ConsumerStatus",
    "DeadLetterHook",
    "DurableConsumer",
    "Event",
    "Handler",
    "NatsCluster",
    "NatsServer",
    "NatsServerError",
    "NatsServerNotFound",
    "PublishAck",
    "Publisher",
    "Reject",
    "RetryLater",
    "connect",
    "encode_event",
    "ensure_streams",
    "find_nats_server",
    "redact_url",
    "register_consumer_metrics",
]
