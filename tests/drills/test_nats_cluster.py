"""The whole platform on a 3-node NATS JetStream cluster (`FORGE_NATS_REPLICAS=3`, NATS_URL
listing every node): learner journeys run while the FORGE stream's leader is killed -9, and
every accepted spawn still ends in exactly one signed, verifying verdict."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from forge.bus import NatsServer
from forge.bus.cluster import NatsCluster
from forge.bus.dial import connect
from forge.bus.subjects import SCENARIO_COMPLETED, SCORE_FINALIZED
from forge.services.common.listener import bind_listener

from ..support.prefixes import runtime_prefix
from .conftest import (
    SERVICES,
    Drill,
    Service,
    fresh_secrets,
    verify_verdict,
    wait_for,
    wait_state,
    wait_verdict,
)

JOURNEYS = 6
KILL_WHEN_RUNNING = 2


@pytest.fixture
def cluster_drill(tmp_path: Path) -> Iterator[tuple[Drill, NatsCluster]]:
    """A prod installation whose bus is a 3-node cluster; services not started."""
    (tmp_path / "db").mkdir()
    (tmp_path / "logs").mkdir()
    cluster = NatsCluster(3, tmp_path / "nats")
    cluster.start()
    # Drill only uses the bus's client_env() and close(), which the cluster provides.
    made = Drill(tmp_path, fresh_secrets(), cast(NatsServer, cluster),
                 runtime_prefix("c"))
    for name in SERVICES:
        sock = bind_listener("127.0.0.1", 0)
        made.services[name] = Service(name, sock.getsockname()[1],
                                      tmp_path / "logs" / f"{name}.log", listener=sock)
    try:
        yield made, cluster
    finally:
        made.close()


def _post(url: str, headers: dict[str, str], body: dict[str, Any] | None,
          expect: int) -> dict[str, Any]:
    """POST, retrying a 503 (the bus failing over) a bounded number of times."""
    for _attempt in range(40):
        resp = httpx.post(url, json=body, headers=headers, timeout=30)
        if resp.status_code != 503:
            assert resp.status_code == expect, resp.text
            answer: dict[str, Any] = resp.json()
            return answer
        assert resp.json()["error"] == "bus_unavailable", resp.text
        threading.Event().wait(0.5)  # Retry-After, shortened
    raise AssertionError(f"{url} answered 503 forty times")


def _submit(url: str, headers: dict[str, str]) -> None:
    """POST a submit (202), retrying a 503 a bounded number of times. The attempt that
    answered 503 may have reached the stream as the leader died (only its acknowledgement
    did not): a retry while that grading runs is answered 202 again, one after it finished
    409 `not_running`. The caller's wait for the verdict then shows the submit applied."""
    answered_503 = False
    for _attempt in range(40):
        resp = httpx.post(url, headers=headers, timeout=30)
        if resp.status_code == 503:
            assert resp.json()["error"] == "bus_unavailable", resp.text
            answered_503 = True
            threading.Event().wait(0.5)  # Retry-After, shortened
            continue
        if answered_503 and resp.status_code == 409:
            assert resp.json()["error"] == "not_running", resp.text
            return
        assert resp.status_code == 202, resp.text
        return
    raise AssertionError(f"{url} answered 503 forty times")


async def _stream_replicas(url: str) -> tuple[int, int]:
    """(configured replicas, peers in the raft group) of the FORGE stream."""
    nc = await connect(url, "probe", max_reconnect_attempts=3)
    try:
        info = await nc.jetstream().stream_info("FORGE")
    finally:
        await nc.close()
    assert info.cluster is not None
    return info.config.num_replicas, 1 + len(info.cluster.replicas or [])


async def _events_per_scenario(url: str) -> dict[str, Counter[str]]:
    """subject → how many stored events name each scenario (read back from the stream)."""
    counts: dict[str, Counter[str]] = {SCORE_FINALIZED: Counter(), SCENARIO_COMPLETED: Counter()}
    nc = await connect(url, "probe", max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        info = await js.stream_info("FORGE")
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("FORGE", seq)
            if msg.subject in counts and msg.data:
                counts[msg.subject][str(json.loads(msg.data)["scenario_id"])] += 1
    finally:
        await nc.close()
    return counts


@pytest.mark.slow
@pytest.mark.root
def test_journeys_survive_the_stream_leader_killed(
    cluster_drill: tuple[Drill, NatsCluster],
) -> None:
    drill, cluster = cluster_drill
    env = drill.env()
    assert len(env["NATS_URL"].split(",")) == 3 and env["FORGE_NATS_REPLICAS"] == "3"
    drill.forge_ok("keys", "generate")
    drill.start()
    # The orchestrator ensured the stream with FORGE_NATS_REPLICAS: still 3 copies (a
    # service unaware of the setting would have "fixed" it down to 1, a single point of loss).
    assert asyncio.run(_stream_replicas(cluster.admin_url)) == (3, 3)
    learners = [drill.learner("acme", "ann"), drill.learner("acme", "bob")]
    running: list[str] = []
    lock = threading.Lock()

    def journey(n: int) -> tuple[str, dict[str, Any]]:
        learner = learners[n % len(learners)]
        # A retried spawn carries the same request_id, so it can never make two labs.
        accepted = _post(f"{drill.url('spawn')}/v1/spawn", learner,
                         {"track": "netplus", "request_id": f"journey-{n:04d}"}, 201)
        scenario_id = str(accepted["scenario_id"])
        wait_state(drill, learner, scenario_id, "running", timeout=120)
        with lock:
            running.append(scenario_id)
        _submit(f"{drill.url('spawn')}/v1/scenarios/{scenario_id}/submit", learner)
        return scenario_id, wait_verdict(drill, learner, scenario_id, timeout=150)

    with ThreadPoolExecutor(JOURNEYS) as pool:
        futures = [pool.submit(journey, n) for n in range(JOURNEYS)]
        # In the middle: some labs run (their submits and verdicts are on the way), others
        # are still being spawned. Kill -9 the node leading the FORGE stream.
        wait_for(lambda: len(running) >= KILL_WHEN_RUNNING or any(f.done() for f in futures),
                 180, f"{KILL_WHEN_RUNNING} labs running")
        leader = cluster.wait_stream_leader()
        cluster.kill(leader)
        new_leader = cluster.wait_stream_leader(not_on=leader)
        done_at_kill = sum(f.done() for f in futures)
        verdicts = dict(f.result(timeout=300) for f in futures)

    assert new_leader != leader and not cluster.running(leader)
    assert done_at_kill < JOURNEYS  # the kill fell in the middle of the journeys
    assert len(verdicts) == JOURNEYS  # every accepted spawn got its verdict: 0 lost
    for scenario_id in verdicts:
        proc = verify_verdict(drill, scenario_id)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # 0 duplicates: one completion and one final score stored per scenario, no more. A
    # verdict written while the leader changed may have its `score.finalized` publish
    # refused: the consumer retries it (RetryLater), so it is waited for, not assumed.
    counts: dict[str, Counter[str]] = {}

    def all_announced() -> bool:
        counts.update(asyncio.run(_events_per_scenario(cluster.admin_url)))
        return set(counts[SCORE_FINALIZED]) >= set(verdicts)

    wait_for(all_announced, 120, "a score.finalized event for every verdict", interval=1.0)
    for subject in (SCENARIO_COMPLETED, SCORE_FINALIZED):
        assert counts[subject] == Counter(dict.fromkeys(verdicts, 1)), (subject, counts[subject])
    for scenario_id in verdicts:
        assert len(list(drill.results(scenario_id).glob("score.json"))) == 1
