"""The assignment gate at spawn and hint reveal: a spawn of a lab assigned to the learner
is judged by the spawn gate in one query (`forge.gates.admit`: the request, the learner, the
plan and the assignment's window and attempts, `forge.assignment`'s rules inside
`forge.spawn`), then the attempt is taken in one store transaction. A hint reveal is judged
by `forge.assignment` (action reveal_hint). Fails closed: no policy answer, no spawn.

Labs assigned to none of the learner's cohorts are not judged here: the plan decides, as
before cohorts existed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from forge.classroom import assignments, attempts
from forge.classroom.assignments import Applicable
from forge.entitlements.resolve import Entitlement
from forge.errors import ForgeError
from forge.identity.caller import Caller
from forge.policy import (
    ASSIGNMENT_PACKAGE,
    PolicyError,
    build_assignment_input,
    build_spawn_input,
    make_policy_engine,
)
from forge.policy.decision import Decision, PolicyEngine
from forge.services.spawn.state import SpawnState

SPAWN = "forge.spawn"


@dataclass(frozen=True)
class Held:
    """An attempt held by a spawn request, to bind to its lab or (only by the request that
    took it) give back."""

    assignment_id: str
    subject: str
    attempt: int
    taken_here: bool
    request_id: str  # the request holding it (settle_attempt: whether it still is)


@dataclass(frozen=True)
class Preloaded:
    """The learner's assignment of the lab, read within the request's one store read; a
    refusal (404 for an assignment id that is not theirs) is kept for `admit` to raise, so
    refusals keep their order (the plan is checked before the assignment)."""

    found: Applicable | None
    error: ForgeError | None = None

    def get(self) -> Applicable | None:
        if self.error is not None:
            raise self.error
        return self.found


def preload(state: SpawnState, caller: Caller, template_id: str,
            assignment_id: str | None) -> Preloaded:
    """Read the assignment `admit` judges (blocking: call from the request's read hop)."""
    try:
        return Preloaded(assignments.applicable(state.ctx.db, caller.tenant_id, caller.subject,
                                                template_id, assignment_id, datetime.now(UTC)))
    except ForgeError as exc:
        return Preloaded(None, exc)


def _engine(state: SpawnState) -> PolicyEngine:
    if state.policy is None:
        state.policy = make_policy_engine(state.settings.opa_url, state.settings.policies_dir,
                                          cache_size=0)  # inputs carry request_id, now_s
    return state.policy


@dataclass(frozen=True)
class SpawnFacts:
    """What the spawn gate judges besides the assignment: the request and the learner."""

    caller: Caller
    ent: Entitlement
    track: str
    request_id: str

    def policy_input(self, found: Applicable) -> dict[str, Any]:
        """The spawn gate's input with the assignment (quotas: the store's limiter)."""
        doc = build_spawn_input(
            request_id=self.request_id, track=self.track, subject=self.caller.subject,
            tenant=self.caller.tenant_id, plan_name=self.ent.plan.name,
            plan_tracks=list(self.ent.plan.tracks), concurrent_limit=0, concurrent_used=0,
            rate_limit_per_minute=0, rate_used=0)
        del doc["quota"]
        doc["assignment"] = found.policy_input(datetime.now(UTC))
        return doc


async def _decide(state: SpawnState, action: str, found: Applicable,
                  spawn: SpawnFacts | None = None) -> Decision:
    """One evaluation: the spawn gate with the assignment (`forge.gates.admit`) for a
    spawn, the assignment gate for a hint reveal."""

    def decide() -> Decision:
        engine = _engine(state)
        if spawn is not None:
            return engine.decide_gates("admit", spawn.policy_input(found)).decisions[SPAWN]
        doc = build_assignment_input(action, found.policy_input(datetime.now(UTC)))
        return engine.decide(ASSIGNMENT_PACKAGE, doc)

    try:
        return await run_in_threadpool(decide)
    except PolicyError:
        raise ForgeError("policy_unavailable", 503,
                         "the assignment rules could not be checked; retry shortly",
                         headers={"Retry-After": "5"}) from None


async def _refusal(state: SpawnState, decision: Decision, found: Applicable,
                   spawn: SpawnFacts) -> ForgeError:
    """The answer to a refused start: 409 `assignment_busy` when it is refused only because
    another start of this learner's holds the last attempt (several Start clicks at once;
    the policy, asked without the attempts under way, would admit it), since that start may
    yet fail and give its attempt back and "all attempts are used" be untrue a second
    later; else the policy's 403."""
    if found.attempts_in_flight and (await _decide(state, "spawn", dataclasses.replace(
            found, attempts_used=found.attempts_used - found.attempts_in_flight),
            spawn)).allow:
        return ForgeError(
            "assignment_busy", 409, "lab: another start of this assignment is under way; if "
            "it fails, its attempt is given back: try again in a moment",
            [{"field": "lab", "assignment_id": found.assignment_id}],
            headers={"Retry-After": "2"})
    return _refused(decision, found)


def _refused(decision: Decision, found: Applicable) -> ForgeError:
    return ForgeError(
        "assignment_refused", 403, "lab: " + "; ".join(sorted(decision.reasons)),
        [{"field": "lab", "assignment_id": found.assignment_id,
          "opens_at": assignments.iso(found.opens_at),
          "closes_at": assignments.iso(found.closes_at),
          "attempts_allowed": found.attempts_allowed, "attempts_used": found.attempts_used}])


async def admit(state: SpawnState, spawn: SpawnFacts, template_id: str,
                assignment_id: str | None, preloaded: Preloaded | None = None) -> Held | None:
    """Judge the spawn against the learner's assignment of this lab and take an attempt;
    None when the lab is assigned to none of their cohorts. 403 `assignment_refused` with
    the policy's reasons (when it opens, that it closed, attempts used), 404 for an
    assignment id that is not theirs. `preloaded`: that assignment, already read."""
    db = state.ctx.db
    caller, request_id = spawn.caller, spawn.request_id

    def find(only: str | None) -> Applicable | None:
        return assignments.applicable(db, caller.tenant_id, caller.subject, template_id,
                                      only, datetime.now(UTC))

    found = (preloaded.get() if preloaded is not None
             else await run_in_threadpool(find, assignment_id))
    if found is None:
        return None
    # A retried request that was admitted before answers as the first time (idempotent),
    # even when that attempt was the last.
    prior = await run_in_threadpool(attempts.attempt_of_request, db, found.assignment_id,
                                    caller.subject, request_id)
    if prior is not None:
        return Held(found.assignment_id, caller.subject, prior, False, request_id)
    decision = await _decide(state, "spawn", found, spawn)
    if not decision.allow:
        raise await _refusal(state, decision, found, spawn)
    taken = await db.write(attempts.take_attempt, db, found.assignment_id,
                           caller.subject, request_id, found.attempts_allowed)
    if taken is None:  # a concurrent spawn took the last attempt: judge again, counted
        again = await run_in_threadpool(find, found.assignment_id)
        assert again is not None
        decision = await _decide(state, "spawn", again, spawn)
        if decision.allow:  # an attempt was given back meanwhile: no reason to refuse
            raise ForgeError("assignment_busy", 409, "lab: other starts of this assignment "
                             "were being taken at the same moment; try again",
                             headers={"Retry-After": "1"})
        raise await _refusal(state, decision, again, spawn)
    return Held(found.assignment_id, caller.subject, taken[0], taken[1], request_id)


async def settle(state: SpawnState, held: Held | None, scenario_id: str | None) -> None:
    """Bind the attempt to the lab it started, or give it back (None: the spawn failed) when
    this request took it (a failed retry must not free the first request's attempt)."""
    if held is not None and (scenario_id is not None or held.taken_here):
        await state.ctx.db.write(lambda: attempts.settle_attempt(
            state.ctx.db, held.assignment_id, held.subject, held.attempt, scenario_id,
            request_id=held.request_id))


async def check_hints(state: SpawnState, scenario_id: str) -> None:
    """403 `hints_not_allowed` when the lab was started for an assignment whose hints are
    off (judged by the policy, action reveal_hint)."""
    found = await run_in_threadpool(assignments.scenario_assignment, state.ctx.db, scenario_id)
    if found is None:
        return
    decision = await _decide(state, "reveal_hint", found)
    if not decision.allow:
        raise ForgeError("hints_not_allowed", 403, "hint: " + "; ".join(sorted(decision.reasons)),
                         [{"field": "hint", "assignment_id": found.assignment_id}])
