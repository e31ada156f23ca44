"""Reading a verdict while the bus is away: on a multi-machine install
(`FORGE_ARTIFACT_STORE=jetstream`) results live in the JetStream Object Store, so a NATS
outage or failover makes GET /v1/scores/{id} (and the leaderboard, which lists the stored
scores) a retryable 503 `bus_unavailable` (what every other bus outage answers, and what a
polling client retries), never a 500 internal error."""

from __future__ import annotations

from forge.bus import NatsServer

from .conftest import MakeBoard, new_scenario_id


async def test_score_read_during_a_bus_outage_is_a_retryable_503(
        make_board: MakeBoard, nats: NatsServer) -> None:
    board = await make_board(env={"FORGE_ARTIFACT_STORE": "jetstream"})
    sid = new_scenario_id()
    async with board.client() as client:
        resp = await client.get(f"/v1/scores/{sid}", headers=board.operator)
        assert resp.status_code == 404, resp.text  # the bus answers: no verdict yet
        nats.kill()
        for path in (f"/v1/scores/{sid}", f"/v1/scores/{sid}/artifacts/score.json",
                     "/v1/leaderboard?tenant_id=acme"):
            resp = await client.get(path, headers=board.operator)
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"] == "bus_unavailable", resp.text
            assert "NATS" in resp.json()["message"] and resp.headers["retry-after"] == "2"
