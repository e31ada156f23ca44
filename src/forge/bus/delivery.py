"""What happens to one message a durable consumer fetched: run the handler, then settle it.

The consumer (`forge.bus.consumer`) owns the connection, the fetch workers and the status;
this module owns what a service relies on for each message:

* explicit ack: a message is acknowledged only after the handler returned;
* handler error: redelivered after `backoff[n-1]` seconds (n = failed attempts); at the
  `max_deliver`-th failed attempt the dead-letter hook gets the event and the last error
  and the message is terminated (never redelivered, never silently dropped: if the hook
  itself fails, the message is redelivered later instead);
* `RetryLater(delay)`: redelivered after `delay`, never dead-lettered and not counted as a
  failed attempt (dependency outage). Deliveries that ended without any answer (a crash,
  ack_wait expiry) do count, so a message that kills its worker cannot loop for ever;
* `Reject(reason)` or a payload that is not a JSON object: dead-lettered at once (poison);
* long handlers keep their message by sending "in progress" every ack_wait/3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from forge.bus.bounded_close import stop_task
from forge.bus.errors import Reject, RetryLater
from forge.bus.events import DeadLetterHook, Event, Handler

# The consumer's log name: the runbook's log lines ("consumer <durable>: ...") keep it.
log = logging.getLogger("forge.bus.consumer")

MAX_ERROR_CHARS = 2000
_MAX_TRACKED_RETRIES = 10_000


def describe_error(exc: BaseException) -> str:
    """`Type: text` of an exception, bounded, for status and logs."""
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:MAX_ERROR_CHARS]


@dataclass
class DeliveryCounts:
    """What a consumer's deliveries came to so far; the consumer's status reads it."""

    delivered: int = 0
    acked: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    last_message_at: float | None = None
    last_error: str | None = None


class MessageSettler:
    """Runs the handler over one message and acks, naks or dead-letters it."""

    def __init__(
        self,
        *,
        durable: str,
        handler: Handler,
        on_dead_letter: DeadLetterHook,
        max_deliver: int,
        backoff: tuple[float, ...],
        ack_wait: float,
        handler_timeout: float | None,
        counts: DeliveryCounts,
    ) -> None:
        self._durable = durable
        self._handler = handler
        self._on_dead_letter = on_dead_letter
        self._max_deliver = max_deliver
        self._backoff = backoff
        self._ack_wait = ack_wait
        self._handler_timeout = handler_timeout
        self._counts = counts
        # RetryLater deliveries seen here, per stream sequence, so that an outage does not
        # use up a message's error budget (bounded map; replicas each keep their own).
        self._retry_later: OrderedDict[int, int] = OrderedDict()

    async def _heartbeat(self, msg: Msg, settled: asyncio.Event) -> None:
        """Send "in progress" every ack_wait/3 until the message is settled. The loop also
        ends on `settled`: a cancellation swallowed inside the client must not keep it (and
        the `process` waiting for it) alive."""
        while not settled.is_set():
            await asyncio.sleep(self._ack_wait / 3)
            if settled.is_set():
                return
            with contextlib.suppress(nats.errors.Error):
                await msg.in_progress()

    def _delay_for(self, failures: int) -> float:
        return self._backoff[min(max(failures, 1) - 1, len(self._backoff) - 1)]

    def _note_retry_later(self, seq: int) -> None:
        self._retry_later[seq] = self._retry_later.get(seq, 0) + 1
        self._retry_later.move_to_end(seq)
        while len(self._retry_later) > _MAX_TRACKED_RETRIES:
            self._retry_later.popitem(last=False)

    def _failures(self, event: Event) -> int:
        """Deliveries of this message that were not answered with RetryLater (here)."""
        return max(1, event.num_delivered - self._retry_later.get(event.stream_seq, 0))

    async def process(self, msg: Msg) -> None:
        """Handle one delivered message and settle it (see the module docstring)."""
        counts = self._counts
        counts.delivered += 1
        counts.last_message_at = time.time()
        event, decode_error = Event.from_msg(msg)
        if decode_error is not None:
            counts.failed += 1
            await self._dead_letter(msg, event, decode_error)
            return
        settled = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(msg, settled))
        try:
            if self._handler_timeout is not None:
                await asyncio.wait_for(self._handler(event), self._handler_timeout)
            else:
                await self._handler(event)
        except RetryLater as exc:
            counts.retried += 1
            self._note_retry_later(event.stream_seq)
            counts.last_error = f"retry later: {exc.reason}"[:MAX_ERROR_CHARS]
            await self._settle(msg.nak(delay=exc.delay), "nak")
        except Reject as exc:
            counts.failed += 1
            await self._dead_letter(msg, event, f"rejected: {exc}"[:MAX_ERROR_CHARS])
        except Exception as exc:
            counts.failed += 1
            error = describe_error(exc)
            counts.last_error = error
            failures = self._failures(event)
            if failures >= self._max_deliver:
                await self._dead_letter(msg, event, error)
            else:
                delay = self._delay_for(failures)
                log.warning(
                    "consumer %s: %s seq %d failed (attempt %d/%d), retry in %.1fs: %s",
                    self._durable,
                    event.subject,
                    event.stream_seq,
                    failures,
                    self._max_deliver,
                    delay,
                    error,
                )
                await self._settle(msg.nak(delay=delay), "nak")
        else:
            self._retry_later.pop(event.stream_seq, None)
            if await self._settle(msg.ack_sync(timeout=2.0), "ack"):
                counts.acked += 1
        finally:
            settled.set()
            await stop_task(heartbeat, 1.0)  # cancels again until it ends, bounded

    async def _dead_letter(self, msg: Msg, event: Event, error: str) -> None:
        self._counts.last_error = error
        try:
            await self._on_dead_letter(event, error)
        except Exception as exc:
            # Never drop it: keep the message and try again later.
            self._counts.last_error = f"dead-letter hook failed: {describe_error(exc)}"
            log.error("consumer %s: %s", self._durable, self._counts.last_error)
            await self._settle(msg.nak(delay=self._backoff[-1]), "nak")
            return
        self._retry_later.pop(event.stream_seq, None)
        if await self._settle(msg.term(), "term"):
            self._counts.dead_lettered += 1
            log.error(
                "consumer %s: dead-lettered %s seq %d after %d deliveries: %s",
                self._durable,
                event.subject,
                event.stream_seq,
                event.num_delivered,
                error,
            )

    async def _settle(self, action: Awaitable[Any], what: str) -> bool:
        """Send ack/nak/term; a failure means the server will redeliver after ack_wait."""
        try:
            await action
        except (nats.errors.Error, TimeoutError) as exc:
            self._counts.last_error = f"{what} failed: {describe_error(exc)}"
            log.warning("consumer %s: %s", self._durable, self._counts.last_error)
            return False
        return True
