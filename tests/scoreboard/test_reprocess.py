"""Failed completions are kept, and reprocessing after the fix gives exactly one verdict."""

from __future__ import annotations

import asyncio
import json
import subprocess

from forge.audit.log import global_log

from .conftest import PYTHON, Board, MakeBoard, build_completion, wait_for, write_completed_entry


def _cli(board: Board, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PYTHON), "-m", "forge", "completions", *args],
                          capture_output=True, text=True, env=board.cli_env(), timeout=60,
                          check=False)


async def test_reprocess_after_fix_via_api_and_cli(make_board: MakeBoard) -> None:
    board = await make_board()
    # The cause: the scenario audit logs lack their scenario.completed entry (storage lag).
    first = build_completion(board.settings, write_audit=False)
    second = build_completion(board.settings, subject="bob", write_audit=False)
    await board.publish_event(first.event)
    await board.publish_event(second.event)
    rows = await wait_for(lambda: len(board.failed_events()) == 2 and board.failed_events(),
                          what="two dead-lettered completions")
    ids = {r.scenario_id: r.id for r in rows}
    assert all("scenario.completed" in r.error for r in rows)
    assert all(r.attempts >= 2 for r in rows)  # bounded redeliveries happened first

    async with board.client() as client:
        # Reprocessing before the fix changes nothing and keeps the events.
        resp = await client.post("/v1/admin/failed-events/reprocess", json={"all": True},
                                 headers=board.operator)
        assert resp.status_code == 200
        assert resp.json()["failed"] == 2 and resp.json()["reprocessed"] == 0
        assert {r.status for r in board.failed_events()} == {"failed"}
        assert not board.results_dir(first.scenario_id).exists()

        # Bad requests name the field; no operator token is 401.
        bad = await client.post("/v1/admin/failed-events/reprocess",
                                json={"id": 1, "all": True}, headers=board.operator)
        assert bad.status_code == 422
        for lax in ({"id": True}, {"all": "yes"}, {"id": "1"}):  # no coercion: {"all": "yes"}
            coerced = await client.post("/v1/admin/failed-events/reprocess", json=lax,
                                        headers=board.operator)  # reprocessed everything
            assert coerced.status_code == 422, (lax, coerced.text)
        anon = await client.post("/v1/admin/failed-events/reprocess", json={"all": True})
        assert anon.status_code == 401
        missing = await client.post("/v1/admin/failed-events/reprocess", json={"id": 999},
                                    headers=board.operator)
        assert missing.status_code == 404

        # Fix the cause, reprocess one through the API, twice: one verdict.
        write_completed_entry(board.settings, first.scenario_id)
        write_completed_entry(board.settings, second.scenario_id)
        body = {"id": ids[first.scenario_id]}
        once = await client.post("/v1/admin/failed-events/reprocess", json=body,
                                 headers=board.operator)
        assert once.json()["results"][0]["status"] == "reprocessed", once.text
        sig = (board.results_dir(first.scenario_id) / "verdict.sig").read_bytes()
        again = await client.post("/v1/admin/failed-events/reprocess", json=body,
                                  headers=board.operator)
        assert again.json()["results"][0]["status"] == "already_reprocessed"
        assert (board.results_dir(first.scenario_id) / "verdict.sig").read_bytes() == sig

    # The other one through the CLI (same scoring step, no HTTP), then --all has nothing left.
    proc = await asyncio.to_thread(_cli, board, "reprocess", "--id",
                                   str(ids[second.scenario_id]), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["results"][0]["status"] == "reprocessed"
    assert board.results_dir(second.scenario_id).is_dir()
    rest = await asyncio.to_thread(_cli, board, "reprocess", "--all")
    assert rest.returncode == 0 and "no failed completion events" in rest.stdout
    usage = await asyncio.to_thread(_cli, board, "reprocess")
    assert usage.returncode == 2

    assert {r.status for r in board.failed_events()} == {"reprocessed"}
    assert await board.wait_finalized(2) == 2
    await asyncio.sleep(0.3)
    assert await board.finalized_count() == 2  # exactly one finalized event per scenario
    audit = global_log(board.settings.storage_root).read_bytes().decode()
    assert audit.count('"event":"score.finalized"') == 2
    assert "completion.reprocess" in audit


async def test_the_failed_event_list_is_read_a_page_at_a_time(make_board: MakeBoard) -> None:
    """Reprocessed events are kept, so `status=all` only grows: the operator's list comes
    a page at a time (`limit` up to 1000, `after_id`, `next`), each event once, in order."""
    from forge.services.scoreboard.scoring import CONSUMER
    from forge.store.failed_events import record_failed_event

    board = await make_board()
    db = board.state.ctx.db
    ids = [record_failed_event(db, consumer=CONSUMER, subject="forge.scenario.completed",
                               msg_id=f"m-{i}", payload="{}", error="x") for i in range(7)]
    async with board.client() as client:
        seen: list[int] = []
        after = 0
        while True:
            page = (await client.get("/v1/admin/failed-events", headers=board.operator,
                                     params={"status": "all", "limit": 3,
                                             "after_id": after})).json()
            assert len(page["events"]) <= 3
            seen += [e["id"] for e in page["events"]]
            if page["next"] is None:
                break
            after = page["next"]
        assert seen == ids
        for bad in ({"limit": 0}, {"limit": 1001}, {"after_id": -1}, {"limit": "x"}):
            resp = await client.get("/v1/admin/failed-events", headers=board.operator,
                                    params=bad)
            assert resp.status_code == 422, (bad, resp.text)


async def test_the_newest_events_come_first_when_asked(make_board: MakeBoard) -> None:
    """The operator page shows the last reprocessed events: `order=newest` pages back with
    `before_id`, each event once; a cursor of the other order is a 422 naming the field."""
    from forge.services.scoreboard.scoring import CONSUMER
    from forge.store.failed_events import mark_reprocessed, record_failed_event

    board = await make_board()
    db = board.state.ctx.db
    ids = [record_failed_event(db, consumer=CONSUMER, subject="forge.scenario.completed",
                               msg_id=f"m-{i}", payload="{}", error="x") for i in range(7)]
    for done in ids[:5]:
        mark_reprocessed(db, done)
    async with board.client() as client:
        seen: list[int] = []
        before: int | None = None
        while True:
            params: dict[str, str | int] = {"status": "reprocessed", "order": "newest",
                                            "limit": 2}
            if before is not None:
                params["before_id"] = before
            page = (await client.get("/v1/admin/failed-events", headers=board.operator,
                                     params=params)).json()
            assert len(page["events"]) <= 2
            seen += [e["id"] for e in page["events"]]
            if page["next"] is None:
                break
            before = page["next"]
        assert seen == ids[:5][::-1]
        for bad, field in (({"order": "newest", "after_id": 3}, "after_id"),
                           ({"before_id": 3}, "before_id"), ({"order": "up"}, "order")):
            resp = await client.get("/v1/admin/failed-events", headers=board.operator,
                                    params=bad)
            assert resp.status_code == 422 and field in resp.text, (bad, resp.text)


async def test_an_old_failure_reprocessed_last_is_listed_first(make_board: MakeBoard) -> None:
    """/ops's "last reprocessed" asks for order=reprocessed: by when an event was mended, so
    an old failure (a low id) reprocessed today is not hidden behind newer ids mended before."""
    from forge.services.scoreboard.scoring import CONSUMER
    from forge.store.failed_events import mark_reprocessed, record_failed_event

    board = await make_board()
    db = board.state.ctx.db
    ids = [record_failed_event(db, consumer=CONSUMER, subject="forge.scenario.completed",
                               msg_id=f"m-{i}", payload="{}", error="x") for i in range(6)]
    for done in [*ids[1:5], ids[0]]:
        mark_reprocessed(db, done)
    async with board.client() as client:
        page = (await client.get("/v1/admin/failed-events", headers=board.operator,
                                 params={"status": "reprocessed", "order": "reprocessed",
                                         "limit": 3})).json()
        assert [e["id"] for e in page["events"]] == [ids[0], ids[4], ids[3]]
        assert page["next"] is None
        for bad, field in (({"before_id": 9}, "before_id"), ({"after_id": 1}, "after_id"),
                           ({"status": "failed"}, "status")):
            resp = await client.get("/v1/admin/failed-events", headers=board.operator,
                                    params={"order": "reprocessed", "status": "reprocessed",
                                            **bad})
            assert resp.status_code == 422, (bad, resp.text)
            assert resp.json()["details"] == [{"field": field, "problem": (
                "order=reprocessed lists status=reprocessed, one page without a cursor")}]
