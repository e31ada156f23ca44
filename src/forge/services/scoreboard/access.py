"""Who is reading: the operator (bearer OPERATOR_TOKEN) or a verified learner."""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from forge.bus.errors import BusUnavailable
from forge.errors import ForgeError
from forge.identity.caller import Caller
from forge.lifecycle.scenario_ids import check_scenario_id
from forge.services.common.auth import bearer_token, carries_operator, check_operator
from forge.services.common.caller_receipt import caller_of
from forge.services.scoreboard.absent_results import NOT_FOUND, absent_results
from forge.services.scoreboard.state import ScoreboardState
from forge_verify.verdict import SCORE_NAME


def scoreboard_state(request: Request) -> ScoreboardState:
    """The app's ScoreboardState."""
    state: ScoreboardState = request.app.state.scoreboard
    return state


@dataclass(frozen=True)
class Reader:
    """A verified reader: the operator, or a learner (tenant + subject)."""

    operator: bool
    caller: Caller | None = None

    def may_read(self, scenario_id: str, tenant_id: object, subject: object) -> bool:
        """Operators read everything; a learner only their own scenario's score."""
        if self.operator:
            return True
        caller = self.caller
        return (caller is not None and isinstance(tenant_id, str) and isinstance(subject, str)
                and caller.owns(tenant_id, subject) and caller.may_see(scenario_id))


async def operator_only(request: Request) -> None:
    """401 unless the request carries an operator credential for the scoreboard (the
    dependency of its admin routes)."""
    state = scoreboard_state(request)
    await check_operator(request, state.settings, state.ctx.name)


async def current_reader(request: Request) -> Reader:
    """The operator when the bearer token is an operator token; else the learner; else 401."""
    state = scoreboard_state(request)
    token = bearer_token(request)
    if token is not None and await carries_operator(request, token, state.settings,
                                                    state.ctx.name):
        return Reader(operator=True)
    caller = await run_in_threadpool(lambda: caller_of(
        request.headers, request.cookies, state.settings, state.ctx.db,
        method=request.method))
    return Reader(operator=False, caller=caller)


def _may_read_score(reader: Reader, scenario_id: str, raw: bytes | None) -> bool:
    """Whether score.json ``raw`` (None: absent) names ``reader`` as its owner."""
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        return False
    return isinstance(doc, dict) and reader.may_read(scenario_id, doc.get("tenant_id"),
                                                     doc.get("subject"))


def check_readable(state: ScoreboardState, reader: Reader, scenario_id: str) -> None:
    """404 unless `reader` may read the scenario's results, judged from its score.json
    alone (a few KiB), before anything reads the whole result set: a colleague asking for
    someone else's score never makes this service fetch and unpack a bundle of up to
    256 MiB. Operators read everything. BusUnavailable propagates (the caller's 503)."""
    if reader.operator:
        return
    raw = state.scorer.artifacts.read_score(scenario_id)
    if raw is None:
        raise absent_results(state.ctx.db, reader, scenario_id)
    if not _may_read_score(reader, scenario_id, raw):
        raise NOT_FOUND


def result_store_down() -> ForgeError:
    """The results live in the JetStream Object Store and the bus is failing over (or
    down): a retryable 503, like every other bus outage, never a 500."""
    return ForgeError("bus_unavailable", 503, "the result store (NATS JetStream) is "
                      "unreachable; retry", headers={"Retry-After": "2"})


def owned_results(state: ScoreboardState, reader: Reader, scenario_id: str) -> dict[str, bytes]:
    """The scenario's result files if `reader` may see them (judged from score.json first,
    then again from the set read: the set is what is served); 404 otherwise, 503 while
    the result store is unreachable."""
    sid = check_scenario_id(scenario_id)  # 422 if malformed: no path is built
    try:
        check_readable(state, reader, sid)
        files = state.scorer.artifacts.read(sid)
    except BusUnavailable:
        raise result_store_down() from None
    if not files:
        raise absent_results(state.ctx.db, reader, sid)
    if not _may_read_score(reader, sid, files.get(SCORE_NAME)):
        raise NOT_FOUND
    return files


def owned_file(state: ScoreboardState, reader: Reader, scenario_id: str, name: str) -> bytes:
    """One result file of the scenario, if `reader` may see the scenario's results (judged
    from score.json, the file served when that is the one asked); only that file is read,
    never the whole set with its bundle. 404 otherwise, 503 while the store is down."""
    sid = check_scenario_id(scenario_id)  # 422 if malformed: no path is built
    artifacts = state.scorer.artifacts
    try:
        score = artifacts.read_score(sid)
        if score is None:
            raise absent_results(state.ctx.db, reader, sid)
        if not _may_read_score(reader, sid, score):
            raise NOT_FOUND
        data = score if name == SCORE_NAME else artifacts.read_file(sid, name)
    except BusUnavailable:
        raise result_store_down() from None
    if data is None:
        raise ForgeError("not_found", 404, f"name: this result has no {name}",
                         [{"field": "name"}])
    return data
