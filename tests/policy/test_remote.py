"""RemoteEngine against forge.policy.opa_server on loopback: same decisions as embedded,
outage handling, retries and the circuit breaker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from forge.bus.ports import free_port
from forge.policy import (
    CircuitBreaker,
    EmbeddedEngine,
    PolicyEvaluationError,
    PolicyInputError,
    PolicyUnavailable,
    RemoteEngine,
    build_spawn_input,
)
from forge.policy.opa_server import OpaServer

from .conftest import POLICIES

Build = Callable[..., dict[str, Any]]




class _DroppingServer:
    """A real listening socket that counts every connection and drops it unanswered."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            self.connections += 1  # counted before the client can see the drop
            conn.close()

    def close(self) -> None:
        """Stop listening and end the accept thread."""
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=10)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _inputs(template_doc: dict[str, Any], training_input: Build) -> list[tuple[str, dict[str, Any]]]:
    good = training_input(template_doc)
    wrong_track = training_input(template_doc, track="ccna", tracks=("netplus", "ccna"),
                                 plan="PRO")
    template_doc["spec"]["assets"]["containers"][0]["capabilities"] = ["SYS_ADMIN", "NET_RAW"]
    template_doc["spec"]["network"].update(egress="allowlist", allowlist_profile="internet")
    bad = training_input(template_doc)
    spawn = build_spawn_input(request_id="req-00000001", track="ccna", subject="s", tenant="t",
                              plan_name="PRO", plan_tracks=["ccna"], concurrent_limit=1,
                              concurrent_used=1, rate_limit_per_minute=5, rate_used=0)
    return [
        (pkg, doc)
        for doc in (good, wrong_track, bad, {})
        for pkg in ("forge.training", "forge.capabilities")
    ] + [("forge.spawn", spawn), ("forge.nothing", good)]


def test_remote_matches_embedded(opa_server: OpaServer, engine: EmbeddedEngine,
                                 template_doc: dict[str, Any], training_input: Build) -> None:
    remote = RemoteEngine(opa_server.url, policy_hash=engine.policy_hash)
    try:
        cases = _inputs(template_doc, training_input)
        outcomes = [remote.decide(pkg, doc) for pkg, doc in cases]
        assert outcomes == [engine.decide(pkg, doc) for pkg, doc in cases]
        assert [d.allow for d in outcomes[:2]] == [True, True]
        assert not outcomes[4].allow and outcomes[4].reasons
        # Every gate in one request (forge.gates.launch), answered as the embedded engine does.
        for _, doc in cases[:8:2]:
            one = remote.decide_gates("launch", doc)
            assert one == engine.decide_gates("launch", doc)
            assert one.decisions == {p: engine.decide(p, doc)
                                     for p in ("forge.training", "forge.capabilities")}
        remote.probe()
    finally:
        remote.close()


def test_server_speaks_opa_data_api(opa_server: OpaServer) -> None:
    with httpx.Client() as c:
        r = c.post(f"{opa_server.url}/v1/data/forge/capabilities/allow",
                   json={"input": {"template": {"track": "netplus", "tier": "foundation",
                                                "containers": []}}})
        assert r.json() == {"result": True}
        assert c.post(f"{opa_server.url}/v1/data/forge/nope", json={"input": {}}).json() == {}
        assert c.get(f"{opa_server.url}/health").status_code == 200
        bad = c.post(f"{opa_server.url}/v1/data/forge/training", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_parameter"
        assert c.post(f"{opa_server.url}/v1/data/../../etc", json={}).status_code == 404


def test_unsafe_input_rejected_client_side(opa_server: OpaServer) -> None:
    remote = RemoteEngine(opa_server.url)
    with pytest.raises(PolicyInputError, match=r"input\.request\.track"):
        remote.decide("forge.training", {"request": {"track": 'x"y'}})
    remote.close()


def test_outage_raises_unavailable_and_breaker_opens() -> None:
    clock = _Clock()
    breaker = CircuitBreaker(threshold=2, reset_after=30, clock=clock)
    server = _DroppingServer()
    remote = RemoteEngine(server.url, retries=2, backoff=0.001, timeout=5, breaker=breaker)
    try:
        for _ in range(2):
            with pytest.raises(PolicyUnavailable, match="after 3 attempt"):
                remote.decide("forge.training", {})
        assert breaker.state == "open"
        assert server.connections == 6  # 2 calls x (1 try + 2 retries)
        with pytest.raises(PolicyUnavailable, match="circuit open"):
            remote.decide("forge.training", {})
        assert server.connections == 6  # fails fast: no network attempt while open
        clock.now += 31
        assert breaker.state == "half-open"
        with pytest.raises(PolicyUnavailable, match="after 3 attempt"):
            remote.decide("forge.training", {})  # the trial call fails: open again
        assert server.connections == 9
        assert breaker.state == "open"
    finally:
        remote.close()
        server.close()


def test_breaker_closes_when_server_returns(engine: EmbeddedEngine) -> None:
    clock = _Clock()
    port = free_port()
    breaker = CircuitBreaker(threshold=1, reset_after=5, clock=clock)
    remote = RemoteEngine(f"http://127.0.0.1:{port}", retries=0, breaker=breaker, timeout=0.5)
    with pytest.raises(PolicyUnavailable):
        remote.decide("forge.spawn", {})
    assert breaker.state == "open"
    server = OpaServer(engine, "127.0.0.1", port)
    thread = server.start_background()
    try:
        with pytest.raises(PolicyUnavailable, match="circuit open"):
            remote.decide("forge.spawn", {})
        clock.now += 6
        d = remote.decide("forge.spawn", {})
        assert not d.allow and d.reasons  # a real answer again (a deny for this input)
        assert breaker.state == "closed"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        remote.close()


def test_probe_does_not_trip_breaker() -> None:
    breaker = CircuitBreaker(threshold=1, reset_after=60)
    remote = RemoteEngine(f"http://127.0.0.1:{free_port()}", breaker=breaker, timeout=0.5)
    for _ in range(3):
        with pytest.raises(PolicyUnavailable, match="unreachable"):
            remote.probe()
    assert breaker.state == "closed"
    remote.close()


def test_server_errors_are_retried_then_unavailable(tmp_path: Path) -> None:
    # A rule with conflicting values makes the engine fail: the server answers 500.
    (tmp_path / "conflict.rego").write_text(
        "package forge.conflict\nimport rego.v1\nallow := true\nallow := false\n"
    )
    eng = EmbeddedEngine(tmp_path)
    server = OpaServer(eng, "127.0.0.1", 0)
    thread = server.start_background()
    breaker = CircuitBreaker(threshold=5)
    remote = RemoteEngine(server.url, retries=1, backoff=0.001, breaker=breaker)
    try:
        with pytest.raises(PolicyUnavailable, match="HTTP 500"):
            remote.decide("forge.conflict", {})
        with pytest.raises(PolicyEvaluationError):
            eng.decide("forge.conflict", {})
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        remote.close()


def test_opa_server_module_runs_as_a_process() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "forge.policy.opa_server", "--policies", str(POLICIES),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()
        assert f"127.0.0.1:{port}" in banner and "policy_hash=" in banner
        remote = RemoteEngine(f"http://127.0.0.1:{port}")
        remote.probe()
        d = remote.decide("forge.capabilities", {"template": {
            "track": "ccna", "tier": "intermediate",
            "containers": [{"name": "r1", "capabilities": ["SYS_MODULE"]}]}})
        remote.close()
        assert json.dumps(d.reasons) == json.dumps([
            'container "r1" requests privileged capability SYS_MODULE, not allowed for '
            "ccna/intermediate"
        ])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
