"""Attack: a completion event that claims checks passed which its own outputs fail.

Whoever can put a `forge.scenario.completed` event in front of the scoreboard (a bus
publisher, or an operator replaying a stored event) sets each check's `passed` flag. Before,
the scoreboard took those flags on their word and signed a 1.0 verdict. Now every check is
judged again from the template (rendered with the lab's values) and the outputs the grader
recorded (evidence files; their hashes and the values' digest are in the scenario's audit log,
written by the orchestrator); any disagreement - flags, check list, commands, containers,
outputs, values - refuses the whole completion as a failed event with the reason, and the
score comes from the re-judged results.
Real nats-server, real scoreboard app and consumer, real SQLite and files.
"""

# ruff: noqa: F811 - `make_board` is a fixture imported from tests/scoreboard/conftest.py

from __future__ import annotations

import json
from typing import Any

import pytest

from ..scoreboard.conftest import (
    Board,
    MakeBoard,
    build_completion,
    make_board,  # noqa: F401 - the live-scoreboard fixture
    output,
    wait_for,
    write_completed_entry,
)


async def _refused(board: Board, body: dict[str, Any]) -> str:
    """Publish `body`; it must end as a failed event and write no verdict. Its error."""
    await board.publish(body)
    rows = await wait_for(board.failed_events, what="refused completion kept as failed")
    assert len(rows) == 1 and rows[0].scenario_id == body["scenario_id"]
    assert not board.results_dir(body["scenario_id"]).exists()
    assert await board.finalized_count() == 0
    return str(rows[0].error)


async def test_forged_pass_on_nats_is_refused_and_the_honest_event_scores(
        make_board: MakeBoard) -> None:
    board = await make_board()
    done = build_completion(board.settings, passed=False)  # route check: empty output
    forged = done.variant()
    forged["results"][1]["passed"] = True
    error = await _refused(board, forged)
    assert "criterion_inconsistent" in error and "route-present[0]" in error
    assert "does not match the expected pattern" in error

    # The honest completion of the same lab is scored from the re-judged results.
    await board.publish_event(done.event, msg_id=f"{done.scenario_id}-honest")
    results = board.results_dir(done.scenario_id)
    await wait_for(results.is_dir, what="honest verdict")
    doc = json.loads((results / "score.json").read_bytes())
    assert (doc["score"], doc["passed"], doc["total"]) == (0.666667, 1, 2)
    assert doc["criteria"][1]["checks"][0]["passed"] is False


async def test_forged_pass_replayed_by_an_operator_is_refused(
        make_board: MakeBoard) -> None:
    board = await make_board()
    # Stored first for another reason (the audit entry is not there yet), then replayed.
    done = build_completion(board.settings, passed=False, write_audit=False)
    forged = done.variant()
    forged["results"][1]["passed"] = True
    await _refused(board, forged)
    write_completed_entry(board.settings, done.scenario_id)
    event_id = board.failed_events()[0].id
    async with board.client() as client:
        resp = await client.post("/v1/admin/failed-events/reprocess", json={"id": event_id},
                                 headers=board.operator)
    assert resp.status_code == 200, resp.text
    outcome = resp.json()["results"][0]
    assert outcome["status"] == "refused", outcome
    assert "criterion_inconsistent" in outcome["message"]
    assert not board.results_dir(done.scenario_id).exists()
    assert [r.status for r in board.failed_events()] == ["failed"]


def _drop_check(body: dict[str, Any]) -> None:
    del body["results"][1]


def _extra_check(body: dict[str, Any]) -> None:
    body["results"].append({**body["results"][1], "check_index": 1})


def _changed_command(body: dict[str, Any]) -> None:
    body["results"][0]["command"] = ["/bin/echo", body["results"][0]["stdout"]["text"]]


def _other_container(body: dict[str, Any]) -> None:
    body["results"][0]["container"] = "target"


def _flag_flipped_to_failed(body: dict[str, Any]) -> None:
    body["results"][0]["passed"] = False


def _truncated_beyond_judging(body: dict[str, Any]) -> None:
    """The event keeps only a prefix without the answer and no evidence file backs it."""
    body["results"][0]["stdout"]["text"] = "x" * 64
    body["results"][0]["stdout"]["truncated"] = True
    body["evidence"] = {}


PASSING_ROUTE = "10.61.2.0/24 via 10.61.1.1 dev eth0\n"


def _outputs_replaced(body: dict[str, Any]) -> None:
    """Passing output in the event, its hash named as the evidence: not the file's bytes."""
    body["results"][1].update(passed=True, stdout=output(PASSING_ROUTE))
    body["evidence"]["route-present.0.stdout"] = output(PASSING_ROUTE)["sha256"]


def _evidence_unnamed(body: dict[str, Any]) -> None:
    """Passing output in the event and no evidence named, so no file is looked at."""
    body["results"][1].update(passed=True, stdout=output(PASSING_ROUTE))
    body["evidence"] = {}


@pytest.mark.parametrize("tamper", [_outputs_replaced, _evidence_unnamed])
async def test_outputs_other_than_the_graders_are_refused(
        make_board: MakeBoard, tamper: Any) -> None:
    board = await make_board()
    done = build_completion(board.settings, passed=False)  # the grader saw no route
    body = done.variant()
    tamper(body)
    error = await _refused(board, body)
    assert "evidence_mismatch" in error, error


async def test_values_other_than_the_labs_are_refused(make_board: MakeBoard) -> None:
    """A wrong answer, the grader's honest record of it, and an event naming values chosen
    so that the wrong answer judges right."""
    board = await make_board()
    done = build_completion(board.settings, write_audit=False)
    wrong = "token " + "W" * 20 + "\n"
    evidence = board.settings.storage_root / "scenarios" / done.scenario_id / "evidence"
    (evidence / "saved-page.0.stdout").write_text(wrong)
    body = done.variant()
    body["results"][0]["stdout"] = output(wrong)
    body["evidence"]["saved-page.0.stdout"] = output(wrong)["sha256"]
    write_completed_entry(board.settings, done.scenario_id, body["evidence"],
                          done.body["variables"])
    body["variables"] = {**done.body["variables"], "secret": "W" * 20}
    error = await _refused(board, body)
    assert "variables_mismatch" in error, error


@pytest.mark.parametrize(("tamper", "code"), [
    (_drop_check, "check_list_mismatch"),
    (_extra_check, "check_list_mismatch"),
    (_changed_command, "check_list_mismatch"),
    (_other_container, "check_list_mismatch"),
    (_flag_flipped_to_failed, "criterion_inconsistent"),
    (_truncated_beyond_judging, "criterion_inconsistent"),
])
async def test_completion_disagreeing_with_the_template_is_refused(
        make_board: MakeBoard, tamper: Any, code: str) -> None:
    board = await make_board()
    done = build_completion(board.settings, passed=True, big_output=200_000)
    body = done.variant()
    tamper(body)
    error = await _refused(board, body)
    assert code in error, error
