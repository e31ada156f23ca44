"""Attack: a completion event in a contract version the scoreboard does not know, or with
fields its contract does not have, is scored by guessing.

Before, the scoreboard picked the fields it knew out of any JSON object: a body marked
`"v": 2` (whose meaning this scoreboard cannot know) or carrying extra fields (a
`score_override`, a 5 MB `padding`) was scored as if it were the old shape, and a
`passed` flag of "yes" was reported with its own ad-hoc code. Now every event is decoded
through its contract (`forge.bus.contracts`): an unknown version ends as a failed event with
reason `unknown_version`, anything else the contract refuses as `invalid_event` naming the
field, no verdict is written, and the reason (never a token) is shown to operators by the
failed-events API and by reprocessing, which refuses it again the same way.
Real nats-server, real scoreboard app and consumer, real SQLite and files.
"""

# ruff: noqa: F811 - `make_board` is a fixture imported from tests/scoreboard/conftest.py

from __future__ import annotations

import json

from ..scoreboard.conftest import (
    MakeBoard,
    build_completion,
    make_board,  # noqa: F401 - the live-scoreboard fixture
    wait_for,
)


async def test_unknown_version_and_extra_fields_end_as_failed_events(
        make_board: MakeBoard) -> None:
    board = await make_board()
    v2 = build_completion(board.settings)
    extra = build_completion(board.settings)
    typed = build_completion(board.settings)
    cases = {
        v2.scenario_id: (v2.variant(v=2), "unknown_version", "v: 2"),
        extra.scenario_id: (extra.variant(score_override=1.0), "invalid_event",
                            "score_override"),
        typed.scenario_id: (typed.variant(retention_days="30"), "invalid_event",
                            "retention_days"),
    }
    for body, _, _ in cases.values():
        await board.publish(body)
    rows = await wait_for(lambda: len(board.failed_events()) == len(cases)
                          and board.failed_events(), what="three failed events")
    by_id = {r.scenario_id: r for r in rows}
    for sid, (body, code, named) in cases.items():
        error = str(by_id[sid].error)
        assert code in error and named in error, error
        assert str(body["sat"]) not in error and str(body["et"]) not in error
        assert not board.results_dir(sid).exists(), f"{sid} must never be scored"
    assert await board.finalized_count() == 0

    async with board.client() as client:
        listed = (await client.get("/v1/admin/failed-events", headers=board.operator)).json()
        reasons = {e["scenario_id"]: e["error"] for e in listed["events"]}
        assert "unknown_version" in reasons[v2.scenario_id]
        again = await client.post("/v1/admin/failed-events/reprocess",
                                  json={"id": by_id[v2.scenario_id].id},
                                  headers=board.operator)
        outcome = again.json()["results"][0]
        assert outcome["status"] == "refused" and "unknown_version" in outcome["message"]
    assert not board.results_dir(v2.scenario_id).exists()

    # The same lab's version-1 event (what the orchestrator publishes) still scores.
    await board.publish_event(v2.event, msg_id=f"{v2.scenario_id}-v1")
    results = board.results_dir(v2.scenario_id)
    await wait_for(results.is_dir, what="verdict of the v1 event")
    assert json.loads((results / "score.json").read_bytes())["scenario_id"] == v2.scenario_id
