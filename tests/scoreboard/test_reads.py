"""Score reads and leaderboards are scoped to the owning tenant (and subject) or operator."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, datetime, timedelta

from forge.identity.apikeys import create_api_key
from forge.identity.caller import SESSION_COOKIE
from forge.store.models import FinalizedAudit, Scenario
from forge.tokens import SESSION, mint_token

from ..services.conftest import SECRETS
from .conftest import Board, MakeBoard, build_completion


async def _score(board: Board, **kwargs: object) -> str:
    """Score a completion through the same step the consumer runs."""
    done = build_completion(board.settings, **kwargs)  # type: ignore[arg-type]
    await asyncio.to_thread(board.state.scorer.score, done.event)
    return done.scenario_id


def _key(board: Board, tenant: str, subject: str) -> dict[str, str]:
    issued = create_api_key(board.state.ctx.db, tenant, subject)
    return {"x-api-key": issued.plaintext}


async def test_score_reads_are_owner_or_operator_only(make_board: MakeBoard) -> None:
    board = await make_board()
    sid = await _score(board, tenant="acme", subject="alice")
    alice, mallory = _key(board, "acme", "alice"), _key(board, "globex", "alice")
    colleague = _key(board, "acme", "bob")
    async with board.client() as client:
        own = await client.get(f"/v1/scores/{sid}", headers=alice)
        assert own.status_code == 200, own.text
        body = own.json()
        assert body["score"]["scenario_id"] == sid and body["score"]["score"] == 1.0
        assert body["verification"]["status"] == "PASS"
        assert body["verification"]["origin"] == "proven"
        assert body["artifacts"] == ["evidence.tar.zst", "score.json", "verdict.pub",
                                     "verdict.sig"]
        # Each download reads that file alone (and score.json, to judge the reader), never
        # the whole set with its bundle of up to 256 MiB: a learner fetching verdict.pub
        # four times made the scoreboard read the bundle four times.
        store = board.state.scorer.artifacts
        whole_reads: list[str] = []
        real_read = store.read

        def counted(scenario_id: str) -> dict[str, bytes] | None:
            whole_reads.append(scenario_id)
            return real_read(scenario_id)

        store.read = counted  # type: ignore[method-assign]
        for name in body["artifacts"]:
            got = await client.get(f"/v1/scores/{sid}/artifacts/{name}", headers=alice)
            assert got.status_code == 200
            assert got.content == (board.results_dir(sid) / name).read_bytes()
        gone = await client.get(f"/v1/scores/{sid}/artifacts/evidence.tar.gz", headers=alice)
        assert gone.status_code == 404 and gone.json()["message"] == (
            "name: this result has no evidence.tar.gz")
        assert whole_reads == []

        # Anyone else gets the same 404 as for a scenario that does not exist, judged from
        # score.json alone: the whole result set is not read either.
        for other in (mallory, colleague):
            assert (await client.get(f"/v1/scores/{sid}", headers=other)).status_code == 404
            art = await client.get(f"/v1/scores/{sid}/artifacts/score.json", headers=other)
            assert art.status_code == 404
            casts = await client.get(f"/v1/scores/{sid}/recordings", headers=other)
            assert casts.status_code == 404
        assert whole_reads == []
        store.read = real_read  # type: ignore[method-assign]
        assert (await client.get(f"/v1/scores/{sid}")).status_code == 401
        assert (await client.get(f"/v1/scores/{sid}", headers=board.operator)).status_code == 200

        # Strict ids and an allowlist of names: nothing else is ever read. A malformed
        # scenario id is a 422 naming it (as on every service), before any lookup.
        for path in ("/v1/scores/scn-XYZ", "/v1/scores/scn-0123456789ABCDEF"):
            resp = await client.get(path, headers=board.operator)
            assert resp.status_code == 422, path
            assert resp.json()["details"][0]["field"] == "scenario_id"
        for path in ("/v1/scores/..%2F..%2Fetc", f"/v1/scores/{sid}/artifacts/audit.jsonl",
                     f"/v1/scores/{sid}/artifacts/..%2F..%2Fforge.db",
                     "/v1/scores/scn-0000000000000000"):
            resp = await client.get(path, headers=board.operator)
            assert resp.status_code == 404, path
            assert resp.json()["error"] == "not_found"
        # A 404 of a name says so in its message, not in details alone.
        for path, said in ((f"/v1/scores/{sid}/recordings/x", "name: no such recording (one "
                            "is named <host>.<n>.cast)"),
                           (f"/v1/scores/{sid}/recordings/h.1.cast",
                            "name: this lab has no such recording"),
                           (f"/v1/scores/{sid}/artifacts/audit.jsonl", "name: no such result "
                            "file; one of evidence.tar.gz, evidence.tar.zst, score.json, "
                            "verdict.pub, verdict.sig")):
            resp = await client.get(path, headers=board.operator)
            assert resp.status_code == 404 and resp.json()["message"] == said, resp.text

        # A restore lost the lab's result files while the store records its verdict: its
        # owner and the operator are told so and what to do (it said "score not found");
        # anyone else still gets the plain 404, so the lab is not revealed to them.
        now = datetime.now(UTC)
        with board.state.ctx.db.session() as sess:
            lab = sess.get(Scenario, sid)
            assert lab is not None and (lab.tenant_id, lab.subject) == ("acme", "alice")
            lab.retention_days = 30
        shutil.rmtree(board.results_dir(sid))
        for path in (f"/v1/scores/{sid}", f"/v1/scores/{sid}/artifacts/score.json",
                     f"/v1/scores/{sid}/recordings"):
            for who in (alice, board.operator):
                lost = await client.get(path, headers=who)
                assert (lost.status_code, lost.json()["error"]) == (404, "results_missing")
                assert "forge artifacts check" in lost.json()["message"], lost.text
            for other in (mallory, colleague):
                hidden = await client.get(path, headers=other)
                assert hidden.json() == {"error": "not_found", "message": "score not found",
                                         "details": []}, hidden.text
        # Past its retention, it says the results were removed by retention.
        with board.state.ctx.db.session() as sess:
            row = sess.get(FinalizedAudit, sid)
            assert row is not None
            row.audited_at = now - timedelta(days=31)
        gone = await client.get(f"/v1/scores/{sid}", headers=alice)
        assert gone.json()["error"] == "results_expired", gone.text
        assert "kept 30 days and removed by results retention" in gone.json()["message"]


async def test_leaderboard_is_per_tenant(make_board: MakeBoard) -> None:
    board = await make_board()
    await _score(board, tenant="acme", subject="alice", passed=False)
    await _score(board, tenant="acme", subject="alice", passed=True)
    await _score(board, tenant="acme", subject="bob", passed=False)
    await _score(board, tenant="globex", subject="eve", passed=True)
    async with board.client() as client:
        acme = await client.get("/v1/leaderboard", headers=_key(board, "acme", "bob"))
        assert acme.status_code == 200, acme.text
        board_body = acme.json()
        assert board_body["tenant_id"] == "acme"
        # A learner sees the others under a pseudonym, without their lab (review CD: the
        # account ids, often e-mail addresses, and labs of the whole organisation).
        [first, own] = board_body["entries"]
        assert (own["subject"], own["best_score"], own["attempts"], own["you"]) == (
            "bob", 0.666667, 1, True)
        assert re.fullmatch(r"learner-[0-9a-f]{10}", first["subject"])
        assert (first["best_score"], first["attempts"], first["you"]) == (1.0, 2, False)
        assert "scenario_id" not in first and "completed_at" not in first
        assert "alice" not in acme.text and "completed_at" in own
        assert board_body["stats"]["scored_scenarios"] == 3
        assert board_body["stats"]["subjects"] == 2
        # The same learner keeps their pseudonym, whoever asks.
        carol = await client.get("/v1/leaderboard", headers=_key(board, "acme", "carol"))
        assert carol.json()["entries"][0]["subject"] == first["subject"]
        globex = await client.get("/v1/leaderboard", headers=_key(board, "globex", "eve"))
        assert [e["subject"] for e in globex.json()["entries"]] == ["eve"]
        # A learner cannot ask for another tenant; the operator must name one, and sees the
        # account ids.
        sneaky = await client.get("/v1/leaderboard?tenant_id=globex",
                                  headers=_key(board, "acme", "bob"))
        assert [e["subject"] for e in sneaky.json()["entries"]] == [first["subject"], "bob"]
        op = await client.get("/v1/leaderboard?tenant_id=globex", headers=board.operator)
        assert [e["subject"] for e in op.json()["entries"]] == ["eve"]
        op_acme = await client.get("/v1/leaderboard?tenant_id=acme", headers=board.operator)
        assert [e["subject"] for e in op_acme.json()["entries"]] == ["alice", "bob"]
        missing = await client.get("/v1/leaderboard", headers=board.operator)
        assert (missing.status_code, missing.json()["error"]) == (400, "tenant_required")
        # A lab's access-link session (scoped to one lab) does not see its colleagues.
        scoped = mint_token(board.settings.sat, SESSION, {
            "sub": "bob", "tenant_id": "acme", "scope": "scenario:scn-0000000000000001"})
        linked = await client.get("/v1/leaderboard",
                                  headers={"cookie": f"{SESSION_COOKIE}={scoped}"})
        assert (linked.status_code, linked.json()["error"]) == (403, "lab_session_only")


async def test_a_learner_below_the_cut_still_finds_their_own_entry(
        make_board: MakeBoard) -> None:
    """A class of 200 on a board cut at 100 (the default): half of it read the board
    without their own entry (`"you": true`), and nothing said that anyone was left out.
    Now the learner's own entry comes after the top `limit`, with its real rank, and
    `more` says the board was cut."""
    board = await make_board()
    await _score(board, tenant="acme", subject="alice", passed=True)
    await _score(board, tenant="acme", subject="bob", passed=True)
    await _score(board, tenant="acme", subject="carol", passed=False)
    async with board.client() as client:
        cut = await client.get("/v1/leaderboard?limit=1", headers=_key(board, "acme", "carol"))
        assert cut.status_code == 200, cut.text
        body = cut.json()
        assert body["more"] is True
        first, own = body["entries"]
        assert (first["rank"], first["you"]) == (1, False)
        assert (own["rank"], own["subject"], own["you"]) == (3, "carol", True)
        # Within the cut, nothing more: the entry is not repeated.
        top = (await client.get("/v1/leaderboard?limit=1",
                                headers=_key(board, "acme", "alice"))).json()
        assert [(e["rank"], e["you"]) for e in top["entries"]] == [(1, True)]
        whole = (await client.get("/v1/leaderboard", headers=_key(board, "acme", "carol"))
                 ).json()
        assert whole["more"] is False and len(whole["entries"]) == 3
        # The operator names no learner: the first `limit`, and `more`.
        operator = await client.get(
            "/v1/leaderboard?tenant_id=acme&limit=2",
            headers={"authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"})
        assert operator.status_code == 200, operator.text
        assert [e["subject"] for e in operator.json()["entries"]] == ["alice", "bob"]
        assert operator.json()["more"] is True


async def test_the_operator_pages_through_a_board_longer_than_a_page(
        make_board: MakeBoard) -> None:
    """A tenant with more learners than the largest `limit` (1,000): the operator read the
    first 1,000 and `"more": true`, with no way to the rest (an `offset` was ignored: page
    two was page one again). Now `offset` skips that many ranks and `next_offset` names the
    next page's; every learner comes once, in rank order; a bad offset is a 422."""
    board = await make_board()
    for subject, passed in (("alice", True), ("bob", True), ("carol", False),
                            ("dave", False), ("erin", False)):
        await _score(board, tenant="acme", subject=subject, passed=passed)
    operator = {"authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}
    async with board.client() as client:
        whole = (await client.get("/v1/leaderboard?tenant_id=acme", headers=operator)).json()
        assert whole["next_offset"] is None and whole["more"] is False
        seen: list[tuple[int, str]] = []
        offset: int | None = 0
        while offset is not None:
            page = await client.get(f"/v1/leaderboard?tenant_id=acme&limit=2&offset={offset}",
                                    headers=operator)
            assert page.status_code == 200, page.text
            seen += [(e["rank"], e["subject"]) for e in page.json()["entries"]]
            offset = page.json()["next_offset"]
            assert page.json()["more"] is (offset is not None)
        assert seen == [(e["rank"], e["subject"]) for e in whole["entries"]]
        assert [rank for rank, _ in seen] == [1, 2, 3, 4, 5]
        # A learner on a later page: their page, and their own entry once.
        erin = (await client.get("/v1/leaderboard?limit=2&offset=2",
                                 headers=_key(board, "acme", "erin"))).json()
        assert [(e["rank"], e["you"]) for e in erin["entries"]] == [(3, False), (4, False),
                                                                    (5, True)]
        # One ranked above the page: their entry after it, as for one below.
        alice = (await client.get("/v1/leaderboard?limit=2&offset=2",
                                  headers=_key(board, "acme", "alice"))).json()
        assert [(e["rank"], e["you"]) for e in alice["entries"]] == [(3, False), (4, False),
                                                                     (1, True)]
        for bad in ("-1", "x", "10000001"):
            refused = await client.get(f"/v1/leaderboard?tenant_id=acme&offset={bad}",
                                       headers=operator)
            assert refused.status_code == 422, refused.text
            assert "offset" in refused.text


async def test_a_receipt_naming_the_learner_reads_their_own_score(
        make_board: MakeBoard) -> None:
    """The refusal says "send an API key, a session cookie or a receipt naming the
    learner", but the scoreboard read no receipt: an API learner following it got the same
    401 (EU). A receipt signs its learner in here as on the spawn API."""
    from forge.billing.receipts import issue_receipt
    from forge.plans import load_plans

    board = await make_board()
    sid = await _score(board, tenant="acme", subject="alice")
    catalog = load_plans(board.settings.plans_file)

    def receipt(subject: str) -> dict[str, str]:
        return {"x-receipt-token": issue_receipt(board.settings, catalog, tenant_id="acme",
                                                 plan="PRO", subject=subject).token}

    async with board.client() as client:
        own = await client.get(f"/v1/scores/{sid}", headers=receipt("alice"))
        assert own.status_code == 200, own.text
        assert own.json()["score"]["scenario_id"] == sid
        other = await client.get(f"/v1/scores/{sid}", headers=receipt("bob"))
        assert other.status_code == 404, other.text
        forged = await client.get(f"/v1/scores/{sid}", headers={"x-receipt-token": "x.y.z"})
        assert forged.status_code == 401 and forged.json()["error"] == "invalid_receipt"
        # an API key beside a stale receipt still signs in by the key
        both = await client.get(f"/v1/scores/{sid}", headers={
            **_key(board, "acme", "alice"), "x-receipt-token": "x.y.z"})
        assert both.status_code == 200, both.text
