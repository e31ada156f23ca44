"""Hints revealed and "check this task" runs: recorded in the store, read back for scoring.

A hint is revealed on demand, one at a time and in order per criterion (hints for the whole
lab form their own sequence); the reveal is stored (tenant-scoped, with its time and the
template's cost) before its text is returned, and only while the lab runs. The scoreboard
reads the reveals back when it scores the scenario, so the signed score charges every hint
the learner saw at the cost stored with the reveal (`forge_verify.score`), and the evidence
lists them (`forge_verify.aids`); a scenario the store has no record of is not scored.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select

from forge.errors import ForgeError
from forge.store.db import Database
from forge.store.models import HintReveal, Scenario, TaskCheckRun
from forge.store.timestamps import aware
from forge_verify.score import HintUse, format_time


class _TemplateHint(Protocol):
    @property
    def criterion(self) -> str | None: ...

    @property
    def cost(self) -> float: ...


@dataclass(frozen=True)
class HintFacts:
    """A template hint without its text: position, id, criterion, cost."""

    index: int
    criterion: str | None
    cost: float

    @property
    def id(self) -> str:
        """`h1`, `h2`, … in template order (what score.json and the evidence name)."""
        return hint_id(self.index)


def hint_id(index: int) -> str:
    """The id of the template's hint at `index` (0-based)."""
    return f"h{index + 1}"


def hint_facts(hints: Sequence[_TemplateHint]) -> tuple[HintFacts, ...]:
    """The facts of a template's `spec.hints`, in order."""
    return tuple(HintFacts(i, h.criterion, float(h.cost)) for i, h in enumerate(hints))


def parse_hint_id(value: str, hints: Sequence[HintFacts]) -> HintFacts:
    """The hint named `value` (`h1`…), or 404 naming the field."""
    for facts in hints:
        if facts.id == value:
            return facts
    raise ForgeError("unknown_hint", 404, "hint: this lab has no such hint",
                     [{"field": "hint", "allowed": [h.id for h in hints]}])


def _judge_reveal(row: Scenario, done: Collection[int], hint: HintFacts,
                  hints: Sequence[HintFacts]) -> None:
    """Refuse a reveal of a hint not yet revealed: 409 when the lab is not running (or has
    reached its end time, which the reaper has not acted on yet) or an earlier hint for
    the same criterion is still hidden."""
    if row.state != "running":
        raise ForgeError("not_running", 409, f"scenario is {row.state}; hints can be "
                         "revealed only while the lab runs")
    if row.expires_at is not None and aware(row.expires_at) <= datetime.now(UTC):
        raise ForgeError("not_running", 409, "scenario has reached its end time; hints "
                         "can be revealed only while the lab runs")
    earlier = [h for h in hints if h.criterion == hint.criterion and h.index < hint.index
               and h.index not in done]
    if earlier:
        raise ForgeError("hint_out_of_order", 409,
                         f"hint: reveal hint {earlier[0].index + 1} first (hints for a "
                         "task open in order)")


def reveal_hint(db: Database, scenario_id: str, tenant_id: str, hint: HintFacts,
                hints: Sequence[HintFacts]) -> datetime:
    """Record that the learner reveals `hint` and return when (the first time, for a hint
    already revealed). 409 when the lab is not running or an earlier hint for the same
    criterion is still hidden. Blocking: call from a worker thread."""
    with db.session() as sess:
        row = sess.get(Scenario, scenario_id, with_for_update=True)
        if row is None or row.tenant_id != tenant_id:
            raise ForgeError("not_found", 404, "scenario not found")
        done = {r.hint_index: r for r in sess.scalars(
            select(HintReveal).where(HintReveal.scenario_id == scenario_id))}
        if hint.index in done:
            return aware(done[hint.index].revealed_at)
        _judge_reveal(row, done, hint, hints)
        now = datetime.now(UTC).replace(microsecond=0)
        sess.add(HintReveal(scenario_id=scenario_id, hint_index=hint.index, tenant_id=tenant_id,
                            criterion=hint.criterion, cost=hint.cost, revealed_at=now))
        return now


def would_reveal(db: Database, scenario_id: str, tenant_id: str, hint: HintFacts,
                 hints: Sequence[HintFacts]) -> bool:
    """Whether `reveal_hint` would record (and so charge) a reveal of `hint` now: False for
    a hint already revealed; the refusal `reveal_hint` would give, raised, for one it
    would refuse. Reads only: a page asks before it charges, and never asks in vain."""
    with db.read() as sess:
        row = sess.get(Scenario, scenario_id)
        if row is None or row.tenant_id != tenant_id:
            raise ForgeError("not_found", 404, "scenario not found")
        done = set(sess.scalars(select(HintReveal.hint_index)
                                .where(HintReveal.scenario_id == scenario_id)))
        if hint.index in done:
            return False
        _judge_reveal(row, done, hint, hints)
        return True


def revealed(db: Database, scenario_id: str) -> dict[int, datetime]:
    """Hint index -> when it was revealed, for one scenario."""
    with db.read() as sess:
        rows = sess.scalars(select(HintReveal).where(HintReveal.scenario_id == scenario_id))
        return {r.hint_index: aware(r.revealed_at) for r in rows}


class ScenarioNotRecorded(LookupError):
    """The store has no record of the scenario: its reveals cannot be known, so it cannot
    be scored yet (never scored as if no hint had been revealed)."""


def hint_uses(db: Database, scenario_id: str, tenant_id: str, hints: Sequence[HintFacts]
              ) -> tuple[HintUse, ...]:
    """The revealed hints as scoring inputs, each with the cost and criterion stored when it
    was revealed, in template order. ScenarioNotRecorded without the scenario's row;
    ValueError when the row is another tenant's or a recorded reveal is not in the template
    (`hints`): never ignored, never charged at a price other than the one shown."""
    with db.read() as sess:
        row = sess.get(Scenario, scenario_id)
        if row is None:
            raise ScenarioNotRecorded(scenario_id)
        if row.tenant_id != tenant_id:
            raise ValueError("hints: the scenario's record belongs to another tenant")
        done = {r.hint_index: (r.criterion, float(r.cost), aware(r.revealed_at))
                for r in sess.scalars(select(HintReveal)
                                      .where(HintReveal.scenario_id == scenario_id))}
    by_index = {h.index: h for h in hints}
    unknown = sorted(set(done) - set(by_index))
    if unknown:
        raise ValueError(f"hints: recorded reveals {unknown} are not in the template")
    return tuple(HintUse(by_index[i].id, done[i][0], done[i][1],
                         format_time(done[i][2], "revealed_at")) for i in sorted(done))


def task_checks(db: Database, scenario_id: str) -> list[dict[str, Any]]:
    """The "check this task" runs of one scenario, oldest first (criterion, time, outcome)."""
    with db.read() as sess:
        rows = sess.scalars(select(TaskCheckRun).where(TaskCheckRun.scenario_id == scenario_id)
                            .order_by(TaskCheckRun.id))
        return [{"criterion": r.criterion, "at": format_time(aware(r.at), "at"),
                 "passed": r.passed} for r in rows]


@dataclass(frozen=True)
class CheckLimits:
    """How often a learner may check a task: per criterion at most once every `every_s`
    seconds, and at most `per_lab` checks in one lab."""

    every_s: int = 20
    per_lab: int = 30


def begin_task_check(db: Database, scenario_id: str, tenant_id: str, criterion: str,
                     limits: CheckLimits) -> int:
    """Record a "check this task" run about to start and return its id; 429 with a
    Retry-After when the limits refuse it (nothing recorded), 409 when the lab is not
    running. Blocking: call from a worker thread."""
    now = datetime.now(UTC)
    with db.session() as sess:
        row = sess.get(Scenario, scenario_id, with_for_update=True)  # serialises the counting
        if row is None or row.tenant_id != tenant_id:
            raise ForgeError("not_found", 404, "scenario not found")
        if row.state != "running":
            raise ForgeError("not_running", 409, f"scenario is {row.state}; a task can be "
                             "checked only while the lab runs")
        runs = list(sess.scalars(select(TaskCheckRun)
                                 .where(TaskCheckRun.scenario_id == scenario_id)))
        if len(runs) >= limits.per_lab:
            raise ForgeError("check_limit", 429, f"checks: this lab allows {limits.per_lab} "
                             "task checks; submit when you are ready",
                             [{"field": "criterion", "limit": limits.per_lab}],
                             headers={"Retry-After": str(_remaining_s(row.expires_at, now))})
        last = max((aware(r.at) for r in runs if r.criterion == criterion), default=None)
        if last is not None and (now - last).total_seconds() < limits.every_s:
            wait = max(1, math.ceil(limits.every_s - (now - last).total_seconds()))
            raise ForgeError("check_too_soon", 429,
                             f"criterion: this task was checked moments ago; check it again "
                             f"in {wait} s", [{"field": "criterion", "retry_after_s": wait}],
                             headers={"Retry-After": str(wait)})
        run = TaskCheckRun(scenario_id=scenario_id, tenant_id=tenant_id, criterion=criterion,
                           passed=None, at=now)
        sess.add(run)
        sess.flush()
        return int(run.id)


def _remaining_s(expires_at: datetime | None, now: datetime) -> int:
    """Seconds until the lab's deadline (when no further check can come), at least 1."""
    if expires_at is None:
        return 60
    return max(1, math.ceil((aware(expires_at) - now).total_seconds()))


def cancel_task_check(db: Database, run_id: int) -> None:
    """Forget a run the lab never performed (the node refused it: busy, or no longer
    running), so it neither counts toward the limits nor appears in the evidence."""
    with db.session() as sess:
        run = sess.get(TaskCheckRun, run_id)
        if run is not None and run.passed is None:
            sess.delete(run)


def finish_task_check(db: Database, run_id: int, passed: bool | None) -> None:
    """Record a run's outcome (None: the node did not answer)."""
    with db.session() as sess:
        run = sess.get(TaskCheckRun, run_id)
        if run is not None:
            run.passed = passed
