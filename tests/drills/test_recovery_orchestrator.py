"""Runbook, "Failure recovery checklist — orchestrator": OPA connectivity, the policy hash pin,
and NATS subscribers; what the operator sees, and the fix."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from forge.bus import NatsServer
from forge.content import content_path

from ..live_server import free_port
from .conftest import (
    PYTHON,
    SERVICES,
    Drill,
    spawn_lab,
    submit,
    wait_for,
    wait_state,
    wait_verdict,
)

POLICIES = content_path("policies")


class Opa:
    """The OPA-compatible server as its own process on a fixed port (killable, restartable)."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "forge.policy.opa_server", "--policies", str(POLICIES),
                 "--port", str(self.port)], stdout=log, stderr=log, start_new_session=True)
        wait_for(self._healthy, 30, "OPA server up")

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def opa(tmp_path: Path) -> Iterator[Opa]:
    server = Opa(tmp_path / "opa.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.slow
@pytest.mark.root
def test_opa_unreachable_then_launches(drill: Drill, opa: Opa) -> None:
    drill.extra["OPA_URL"] = opa.url
    drill.forge_ok("keys", "generate")
    drill.start()
    orch = drill.services["orchestrator"]
    learner = drill.learner("acme", "olga")

    opa.kill()
    body = orch.wait_failed_check("policy")
    assert body["checks"]["policy"]["ok"] is False
    assert "readiness check policy failed" in orch.log()
    # A spawn is accepted and waits: the orchestrator retries instead of failing it.
    resp = httpx.post(f"{drill.url('spawn')}/v1/spawn", json={"track": "netplus"},
                      headers=learner, timeout=30)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["scenario_id"]
    wait_for(lambda: f"policy engine unavailable for {sid}; will retry" in orch.log(), 30,
             "the orchestrator's retry log line")
    time.sleep(3)
    assert wait_state(drill, learner, sid, "pending", timeout=5)["state"] == "pending"

    # OPA is back: readiness recovers and the waiting spawn launches.
    opa.start()
    orch.wait_ready(30)
    wait_state(drill, learner, sid, "running", timeout=60)
    submit(drill, learner, sid)
    wait_verdict(drill, learner, sid)


@pytest.mark.slow
@pytest.mark.root  # readiness checks the real sandbox runtime
def test_policy_hash_mismatch_refuses_start(drill: Drill) -> None:
    actual = drill.forge_ok("policy", "hash").strip()
    assert len(actual) >= 16
    pinned = "0" * len(actual)
    orch = drill.services["orchestrator"]
    orch.start(drill.env(OPA_POLICY_HASH=pinned))
    assert orch.proc is not None
    code = orch.proc.wait(timeout=60)
    assert code == 1
    log = orch.log()
    assert "forge serve orchestrator: policy bundle hash mismatch" in log
    assert "Traceback" not in log
    assert f"OPA_POLICY_HASH expects {pinned}" in log
    assert f"the loaded policies hash to {actual}" in log
    assert orch.readyz()[0] == 0  # never served

    # The fix: pin the hash `forge policy hash` prints (the bundle that was reviewed).
    orch.start(drill.env(OPA_POLICY_HASH=actual))
    orch.wait_ready(60)
    assert f"policy bundle hash {actual} (pinned by OPA_POLICY_HASH)" in orch.log()
    assert actual in orch.readyz()[1]["checks"]["policy"]["detail"]


@pytest.mark.slow
@pytest.mark.root
def test_nats_restart_subscribers_reconnect(drill: Drill) -> None:
    drill.forge_ok("keys", "generate")
    drill.start()
    learner = drill.learner("acme", "nick")
    before = spawn_lab(drill, learner)

    # An event accepted just before the outage (JetStream acknowledged it) is not lost.
    resp = httpx.post(f"{drill.url('spawn')}/v1/spawn", json={"track": "netplus"},
                      headers=learner, timeout=30)
    assert resp.status_code == 201
    accepted = resp.json()["scenario_id"]
    nats: NatsServer = drill.nats
    port = nats.port
    nats.stop()
    for name in SERVICES:
        body = drill.services[name].wait_failed_check("nats", 30)
        assert "NATS not connected" in body["checks"]["nats"]["detail"]
        assert "readiness check nats failed: NATS not connected" in drill.services[name].log()
    down = httpx.post(f"{drill.url('spawn')}/v1/spawn", json={"track": "netplus"},
                      headers=learner, timeout=30)
    assert down.status_code == 503 and down.headers.get("retry-after"), down.text

    # NATS comes back on the same port with its store: subscribers reconnect by themselves.
    nats.start()
    assert nats.port == port
    for name in SERVICES:
        drill.services[name].wait_ready(60)
    wait_state(drill, learner, accepted, "running", timeout=60)
    submit(drill, learner, before)
    wait_verdict(drill, learner, before)

    # The runbook's manual step works too and reports each subscriber connected.
    out = drill.forge_ok("nats", "restart-subscriber")
    for name in SERVICES:
        assert f"{name}: " in out
    assert "not yet connected" not in out
    one = drill.forge_ok("nats", "restart-subscriber", "--service", "orchestrator")
    assert one.startswith("orchestrator: ") and "spawn:" not in one
    after = spawn_lab(drill, learner)
    submit(drill, learner, accepted)
    submit(drill, learner, after)
    for sid in (accepted, after):
        wait_verdict(drill, learner, sid)
    assert sorted(p.name for p in (drill.storage / "scenarios").iterdir()) == sorted(
        [before, accepted, after])
