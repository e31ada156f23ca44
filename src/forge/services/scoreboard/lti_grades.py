"""LTI grade passback from the scoreboard (issue 18 item 4).

A durable consumer of `forge.score.finalized` (the scoreboard's own verdicts, also those
signed by `forge completions reprocess`) writes the grade a verdict owes an LMS into the
store's outbox (`lti_grade_posts`) when the lab was started for an assignment of a cohort
linked to that LMS's course, from the LMS or from Forge: the learner's best graded score
of the assignment, read from this scoreboard's results of all their attempts as the
dashboard reads it (`dashboard.best_result`); the event is acknowledged only once that row
exists. A poster then posts owed
grades to their line items (Assignment and Grade Services, with a client-credentials
token) and retries with a doubling backoff while the platform is down or failing, so a
platform that is away loses no grade; one that refuses the grade itself (400, 404...) is
marked failed with its reason for the operator. Runs only when an LTI file is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from forge.bus import DurableConsumer, Event, Reject
from forge.bus.contracts import ContractError, ScoreFinalizedV1, decode_as
from forge.bus.subjects import DURABLE_SCOREBOARD_LTI_GRADES, SCORE_FINALIZED
from forge.classroom import lti_grade_outbox, lti_grade_posts
from forge.classroom.dashboard import best_result
from forge.config.settings import Settings
from forge.evidence.artifact_store import ArtifactStore
from forge.identity.lti_config import LtiRegistry
from forge.identity.lti_services import LtiCallFailed, PlatformClient
from forge.lifecycle import states
from forge.services.common.bus import bus_credentials, bus_streams
from forge.services.scoreboard.summary_routes import summarize
from forge.store.db import Database
from forge.store.failed_events import record_failed_event

log = logging.getLogger("forge.scoreboard.lti")
POLL_S = 5.0
SETTLE_S = 60.0  # waiting grades looked at again this often


def owe_best(db: Database, artifacts: ArtifactStore | None, done: ScoreFinalizedV1) -> bool:
    """Owe the learner's best graded score of the assignment (this verdict's and their
    other attempts' results, as the dashboard reads them), when a grade is owed at all."""
    attempt = lti_grade_outbox.graded_attempt(db, done.scenario_id)
    if attempt is None:
        return False
    scores: dict[str, dict[str, Any]] = {}
    if artifacts is not None:
        for lab in attempt.labs:  # the dashboard's graded candidates
            if lab.scenario_id != done.scenario_id and lab.state == states.COMPLETED:
                found = summarize(artifacts.read_score(lab.scenario_id), lab.scenario_id)
                if found is not None:
                    scores[lab.scenario_id] = found
    scores[done.scenario_id] = {"tenant_id": done.tenant_id, "subject": done.subject,
                                "score": float(done.score)}
    best = best_result(attempt.labs, scores, attempt.tenant_id)
    score = float(best[0]["score"]) if best is not None else float(done.score)
    return lti_grade_outbox.owe_grade(db, done.scenario_id, score, done.completed_at)


class GradePoster:
    """The outbox consumer and the poster loop of one scoreboard process."""

    def __init__(self, settings: Settings, db: Database, registry: LtiRegistry,
                 poll_s: float = POLL_S, artifacts: ArtifactStore | None = None) -> None:
        self.settings, self.db, self.registry, self.poll_s = settings, db, registry, poll_s
        self.artifacts = artifacts  # the signed results (None: only the verdict's own)
        self._wake = asyncio.Event()
        self._settled_at: float | None = None  # monotonic time of the last settle round
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self.consumer = DurableConsumer(
            settings.nats_url, durable=DURABLE_SCOREBOARD_LTI_GRADES,
            subjects=(SCORE_FINALIZED,), handler=self.handle,
            on_dead_letter=self.dead_letter, name="forge-scoreboard-lti",
            credentials=bus_credentials(settings, "scoreboard"),
            streams=bus_streams(settings), ack_wait=settings.bus_ack_wait_s)

    async def handle(self, event: Event) -> None:
        """Owe the learner's best grade to the LMS (when the lab's assignment is of a class
        linked to an LMS course, whichever way it was started); idempotent."""
        try:
            done = decode_as(ScoreFinalizedV1, event.subject, event.raw)
        except ContractError as exc:
            raise Reject(str(exc)) from None
        owed = await asyncio.to_thread(owe_best, self.db, self.artifacts, done)
        if owed:
            self._wake.set()

    async def dead_letter(self, event: Event, error: str) -> None:
        """Keep an event given up on (never dropped)."""
        await asyncio.to_thread(
            record_failed_event, self.db, consumer=DURABLE_SCOREBOARD_LTI_GRADES,
            subject=event.subject, msg_id=event.msg_id,
            payload=event.raw.decode("utf-8", "replace"), error=error,
            attempts=max(1, event.num_delivered))

    async def settle_waiting(self) -> None:
        """Once every SETTLE_S: give waiting grades where they go, if known by now (a launch
        or roster sync settles its cohort at once, but one that raced the grade's own
        recording left it waiting; so did one stored before the learner's LMS id was)."""
        now = time.monotonic()
        if self._settled_at is not None and now - self._settled_at < SETTLE_S:
            return
        self._settled_at = now
        for cohort_id in await asyncio.to_thread(lti_grade_outbox.waiting_cohorts, self.db):
            await asyncio.to_thread(lti_grade_outbox.settle_owed, self.db, cohort_id)

    async def post_due(self, client: PlatformClient) -> int:
        """Post every grade whose time has come; the number posted. A platform that fails
        a post (down, timing out, refusing our token) is not called again this round: its
        other grades wait for that one's retry, so one LMS that times out (10 s a call)
        does not hold every other LMS's grades for minutes a round, nor is it hammered."""
        posted = 0
        await self.settle_waiting()
        due = await asyncio.to_thread(lti_grade_posts.due_grades, self.db, datetime.now(UTC))
        failing: dict[str, tuple[datetime, str]] = {}  # platform: (its retry, why)
        for row in due:
            platform = self.registry.platforms.get(row.platform)
            if platform is None:
                await asyncio.to_thread(lti_grade_posts.grade_retry, self.db, row.scenario_id,
                                        f"platform {row.platform} is no longer registered",
                                        final=True)
                continue
            if row.platform in failing:
                until, why = failing[row.platform]
                await asyncio.to_thread(lti_grade_posts.grade_deferred, self.db,
                                        row.scenario_id, until, why)
                continue
            try:
                await client.post_score(platform, row.lineitem, row.lti_user, row.score_given,
                                        row.score_maximum, row.timestamp)
            except LtiCallFailed as exc:
                log.warning("lti grade of %s not posted (%s): %s", row.scenario_id,
                            "given up" if exc.final else "will retry", exc)
                retry = await asyncio.to_thread(lti_grade_posts.grade_retry, self.db,
                                                row.scenario_id, str(exc), final=exc.final)
                if retry is not None:
                    failing[row.platform] = (retry, f"waiting: another grade's post to "
                                                    f"platform {row.platform} failed ({exc})")
                continue
            await asyncio.to_thread(lti_grade_posts.grade_posted, self.db, row.scenario_id)
            log.info("lti grade of %s posted to %s", row.scenario_id, platform.name)
            posted += 1
        return posted

    async def _run(self) -> None:
        assert self._http is not None
        client = PlatformClient(self.registry, self._http)
        while True:
            try:
                await self.post_due(client)
            except Exception:  # a store fault: log and try again on the next round
                log.exception("lti grade posting round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
            self._wake.clear()

    async def start(self) -> None:
        """Start the consumer and the poster."""
        self._http = httpx.AsyncClient()
        await self.consumer.start(wait=3.0)
        self._task = asyncio.create_task(self._run(), name="forge-lti-grades")

    async def stop(self) -> None:
        """Stop both; owed grades stay in the outbox for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()
        if self._http is not None:
            await self._http.aclose()
