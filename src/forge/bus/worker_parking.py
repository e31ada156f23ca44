"""When a durable consumer's pull workers fetch: the gate they ask for room, how long an idle
fetch is held open, and the late delivery that wakes a parked worker.

`forge.bus.consumer` runs the workers; this module holds what decides whether a worker
sends a fetch request at all, so an idle service costs the bus (and itself) almost nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
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


def parked_late_delivery(subs: Mapping[int, JetStreamContext.PullSubscription]) -> bool:
    """Did the server hand a parked worker's last pull a message after that worker stopped
    waiting? The first worker looks each time its own fetch ends empty, so a parked worker
    needs no timer of its own: each used to wake every third of ack_wait (at most 20 s) to
    look at its own queue, 1.3 wake-ups a second of an idle orchestrator's 13 parked
    workers, nearly always for nothing."""
    return any(late_delivery(sub) for index, sub in subs.items() if index)


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
