"""When a durable consumer's pull workers fetch: the gate they ask for room, how long an idle
worker parks instead of holding a pull open, and the late delivery that wakes it.

`forge.bus.consumer` runs the workers; this module holds what decides whether a worker
sends a fetch request at all, so an idle service costs the bus (and itself) almost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from nats.js.client import JetStreamContext


class FetchGate(Protocol):
    """Consulted before every fetch: `try_enter` reserves room (False: do not fetch now)."""

    def try_enter(self) -> bool: ...

    def leave(self) -> None: ...


GATE_POLL_S = 0.1
# How long one idle fetch waits at the server for a message (a message that arrives is
# handed over at once, so this costs no latency) and how often an idle consumer refreshes
# its pending count: an idle orchestrator runs 16 fetch workers, and 2 s / 1 s made it wake
# ~60 times a second (0.65 % of a core while nothing happened; issue 19 item 5).
# While a consumer is idle only its first worker keeps a fetch open; the others park until
# a message or a backlog shows up (see `DurableConsumer._worker`): 16 open fetches, renewed
# every 5 s, were most of an idle orchestrator's CPU and of the bus's.
# The idle refresh only keeps the pending gauge honest and wakes parked workers on a
# backlog worker 0's fetch missed (a pull lost with a consumer leader; worker 0's next
# fetch, within IDLE_FETCH_S, finds it too), so it runs every 15 s, not every 5 s (one
# request fewer per idle consumer every 7.5 s, on the service and on nats-server).
IDLE_FETCH_S = 5.0
IDLE_REFRESH_S = 15.0
# A parked worker looks at its own queue this often (at most a third of ack_wait): a message
# the server handed to its pull just after the client gave up waiting (its expiry runs on
# the server's clock) sits there until then, never until redelivery. Only then does it
# fetch (the fetch takes the queued message first): a parked worker that found nothing
# sends no request, where each used to renew a pull every PARK_S (an idle orchestrator's
# 14 parked workers were two thirds of its requests to nats-server).
PARK_S = 20.0


async def park(active: asyncio.Event, park_s: float) -> None:
    """Wait until the consumer is active again (a message, a backlog) or `park_s` passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(active.wait(), park_s)


def late_delivery(sub: JetStreamContext.PullSubscription | None) -> bool:
    """Did the server hand this worker's last pull a message after the client stopped
    waiting? It sits in the worker's own queue (a fetch takes it without a request)."""
    return sub is not None and sub.pending_msgs > 0 and queued_message(sub)


def queued_message(sub: JetStreamContext.PullSubscription) -> bool:
    """Is a message, not a status, waiting in this pull subscription's own queue?

    Every pull that expires idle leaves the server's "408 Request Timeout" notice there
    (it arrives just after the client stopped waiting); the next fetch would drop it and
    then send a request. Notices at the head are dropped here the same way, so a parked
    worker fetches only for a real message. With client internals other than nats-py's
    (a queue of messages), the answer is yes: the worker fetches, as it always did."""
    queue = getattr(getattr(sub, "_sub", None), "_pending_queue", None)
    if not isinstance(queue, asyncio.Queue):
        return True
    while not queue.empty():
        msg = queue.get_nowait()
        if not JetStreamContext.is_status_msg(msg):
            queue.put_nowait(msg)  # back for the fetch (batches of one: order is free)
            return True
    return False
