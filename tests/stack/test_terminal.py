"""The learner's terminal: browser → spawn_service WebSocket → orchestrator → PTY in the lab."""

from __future__ import annotations

import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .conftest import Platform

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


def spawn_running(platform: Platform, headers: dict[str, str]) -> str:
    with platform.client() as client:
        sid = client.post("/v1/spawn", json={"track": "netplus"}, headers=headers).json()[
            "scenario_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if client.get(f"/v1/scenarios/{sid}", headers=headers).json()["state"] == "running":
                return str(sid)
            time.sleep(0.1)
    raise AssertionError("lab never ran")


def ws_url(platform: Platform, sid: str) -> str:
    return platform.spawn_url.replace("http://", "ws://") + f"/v1/scenarios/{sid}/terminal"


def read_until(ws: object, marker: bytes, timeout: float = 15, seen: bytes = b"") -> bytes:
    """Everything received until `marker` appears in `seen` plus what arrives (output may
    come in one chunk or several, so a second marker may already be in hand)."""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{marker!r} not seen; got {seen[-400:]!r}")
        data = ws.recv(timeout=remaining)  # type: ignore[attr-defined]
        seen += data if isinstance(data, bytes) else data.encode()
    return seen


def test_terminal_round_trip_in_learner_host(platform: Platform) -> None:
    headers = platform.learner()
    sid = spawn_running(platform, headers)
    with connect(ws_url(platform, sid), additional_headers=headers) as ws:
        ws.send(b"echo forge-$((6*7)); hostname\n")
        out = read_until(ws, b"forge-42")
        head, _, tail = out.partition(b"forge-42")
        out = head + b"forge-42" + read_until(ws, b"learner", seen=tail)
        assert b"forge-42" in out
        ws.send('{"type":"resize","rows":40,"cols":120}')
        ws.send(b"stty size\n")
        assert b"40 120" in read_until(ws, b"40 120")
        # A bad control frame is ignored; it never ends the terminal ("shell exited").
        ws.send('{"type":"resize","rows":Infinity,"cols":5}')
        ws.send(b"echo still-$((1+1))\n")
        assert b"still-2" in read_until(ws, b"still-2")


def test_terminal_refuses_strangers_and_foreign_origins(platform: Platform) -> None:
    headers = platform.learner()
    sid = spawn_running(platform, headers)
    attempts = [
        {"additional_headers": platform.learner("evil", "alice")},  # another tenant
        {"additional_headers": {}},  # nobody
        {"additional_headers": headers, "origin": "http://evil.example"},  # hijack attempt
    ]
    for kwargs in attempts:
        with pytest.raises(InvalidStatus) as err:
            connect(ws_url(platform, sid), **kwargs)  # type: ignore[arg-type]
        assert err.value.response.status_code == 403
    with connect(ws_url(platform, sid), additional_headers=headers,
                 origin=platform.spawn_url) as ws:  # type: ignore[arg-type]
        ws.send(b"echo same-origin-ok\n")
        read_until(ws, b"same-origin-ok")


def test_learner_sees_only_their_workstation(platform: Platform) -> None:
    """Finding the other hosts is the exercise: the learner API shows only the learner host."""
    headers = platform.learner()
    sid = spawn_running(platform, headers)
    with platform.client() as client:
        body = client.get(f"/v1/scenarios/{sid}", headers=headers).json()
    assert set(body["hosts"]) == {"learner"}
    assert body["other_hosts"] == 2
