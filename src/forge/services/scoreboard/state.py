"""What a running scoreboard holds, and its consumer of `forge.scenario.completed`.

The handler decodes the event through its contract (`forge.bus.contracts`): an invalid or
unknown-version body is rejected with the contract's reason code. It then maps scoring
outcomes onto the bus's semantics: a refused event is rejected (dead-lettered at once and
kept as a failed event), a paused one (no signing key, storage not writable) is retried
later without ever being dead-lettered, and any other fault is retried with backoff and
kept as a failed event after the last delivery.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from forge.bus import DurableConsumer, Event, Publisher, Reject, RetryLater
from forge.bus.contracts import ContractError, ScenarioCompletedV1, decode_as, publish_event
from forge.bus.errors import BusUnavailable
from forge.bus.subjects import SCENARIO_COMPLETED
from forge.config.settings import Settings
from forge.services.common.app import ServiceContext
from forge.services.common.bus import bus_credentials, bus_streams
from forge.services.scoreboard.event_intake import CompletionRefused
from forge.services.scoreboard.leaderboard import ScoreIndex
from forge.services.scoreboard.scoring import CONSUMER, Finalized, Scorer
from forge.services.scoreboard.scoring_errors import ScoringPaused

log = logging.getLogger("forge.scoreboard")

PAUSE_RETRY_S = 5.0


@dataclass
class ScoreboardState:
    """Settings, store, scorer and bus parts of one scoreboard process."""

    ctx: ServiceContext
    scorer: Scorer
    publisher: Publisher
    index: ScoreIndex
    consumer: DurableConsumer | None = None
    consumer_options: dict[str, Any] = field(default_factory=dict)
    pause_retry_s: float = PAUSE_RETRY_S

    @property
    def settings(self) -> Settings:
        """The installation's settings."""
        return self.ctx.settings

    async def publish_finalized(self, finalized: Finalized) -> None:
        """Publish `forge.score.finalized` (de-duplicated by `<id>-finalized`)."""
        await publish_event(self.publisher, finalized.event, msg_id=finalized.msg_id)

    async def handle(self, event: Event) -> None:
        """Consumer handler: score once, then announce the verdict."""
        try:
            completed = decode_as(ScenarioCompletedV1, event.subject, event.raw)
        except ContractError as exc:
            log.warning("completion %s refused: %s", event.msg_id, exc)
            raise Reject(str(exc)) from None
        try:
            pack = await self.scorer.fetch_pack(completed)
            finalized = await asyncio.to_thread(self.scorer.score, completed, pack)
        except CompletionRefused as exc:
            log.warning("completion %s refused: %s", event.msg_id, exc)
            raise Reject(str(exc)) from None
        except ScoringPaused as exc:
            log.warning("scoring paused: %s", exc)
            raise RetryLater(self.pause_retry_s, f"scoring paused: {exc}") from None
        except BusUnavailable as exc:  # the evidence bucket cannot be read right now
            raise RetryLater(self.pause_retry_s, f"evidence not readable: {exc}") from None
        try:
            await self.publish_finalized(finalized)
        except BusUnavailable as exc:
            raise RetryLater(self.pause_retry_s,
                             f"finalized event not published: {exc}") from None
        log.info("scenario %s scored %s (%s)", finalized.scenario_id,
                 finalized.payload["score"], "new verdict" if finalized.created else "no-op")

    async def dead_letter(self, event: Event, error: str) -> None:
        """Keep an event the consumer gave up on, with its last error, and audit it."""
        await asyncio.to_thread(
            lambda: self.scorer.record_failure(
                self.ctx.db, subject=event.subject, msg_id=event.msg_id, raw=event.raw,
                error=error, scenario_id=event.data.get("scenario_id"),
                attempts=max(1, event.num_delivered)))

    def make_consumer(self) -> DurableConsumer:
        """The durable consumer on `forge.scenario.completed`."""
        self.consumer = DurableConsumer(
            self.settings.nats_url, durable=CONSUMER,
            subjects=(SCENARIO_COMPLETED,), handler=self.handle,
            on_dead_letter=self.dead_letter, name="forge-scoreboard",
            credentials=bus_credentials(self.settings, "scoreboard"),
            streams=bus_streams(self.settings),
            **{"ack_wait": self.settings.bus_ack_wait_s, **self.consumer_options})
        return self.consumer
