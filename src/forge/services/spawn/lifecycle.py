"""Consumes terminal scenario events and gives the scenario's concurrency slot back."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool

from forge.bus import DurableConsumer, Event, Reject
from forge.bus.contracts import ContractError, ScenarioEndedV1, decode_as
from forge.bus.permissions import BusCredentials
from forge.bus.subjects import DURABLE_SPAWN_LIFECYCLE, FORGE_STREAMS, SCENARIO_ENDED, StreamSpec
from forge.quotas.limiter import release
from forge.store.db import Database
from forge.store.failed_events import record_failed_event

log = logging.getLogger("forge.spawn.lifecycle")


def lifecycle_consumer(url: str, db: Database, *, credentials: BusCredentials | None = None,
                       streams: tuple[StreamSpec, ...] = FORGE_STREAMS,
                       **options: float) -> DurableConsumer:
    """A durable consumer of `forge.scenario.ended` notices that releases slots.

    Each notice is decoded through its contract; an invalid or unknown-version one is
    rejected with the reason and kept as a failed event. It reads the slim notice, never
    `forge.scenario.completed`: the bus does not let the learner-facing service see grading
    results (they carry the lab's expected answers).
    """

    async def handle(event: Event) -> None:
        try:
            ended = decode_as(ScenarioEndedV1, event.subject, event.raw)
        except ContractError as exc:
            raise Reject(str(exc)) from None
        scenario_id = ended.scenario_id
        # A write: on the store's writer thread with the service's other writes (an AnyIO
        # worker hop cost twice the CPU of the executor's, once per lab).
        released = await db.write(release, db, scenario_id)
        log.info("scenario %s ended (%s); slot %s", scenario_id, event.subject,
                 "released" if released else "already free")

    async def dead_letter(event: Event, error: str) -> None:
        await run_in_threadpool(
            lambda: record_failed_event(
                db, consumer=DURABLE_SPAWN_LIFECYCLE, subject=event.subject,
                msg_id=event.msg_id, payload=event.raw.decode("utf-8", "replace"), error=error,
                scenario_id=event.data.get("scenario_id"), attempts=event.num_delivered,
            )
        )

    return DurableConsumer(url, durable=DURABLE_SPAWN_LIFECYCLE,
                           subjects=(SCENARIO_ENDED,), handler=handle,
                           on_dead_letter=dead_letter, credentials=credentials, streams=streams,
                           **options)  # type: ignore[arg-type]
