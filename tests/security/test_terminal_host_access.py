"""A learner's terminal opens only on hosts the lab's template marks `access: learner`.

Attack: the terminal's host came from spawn_service's constant, so a page (or a hand-made
WebSocket) had no way to ask for another host - and once terminals take a host, nothing but
the page would stop a learner asking for a shell on a grader-only or internal host (the
server holding the answers) or on a host of another learner's lab. Now the orchestrator
checks the token's host against the template itself (server-side, fail closed): a host not
marked `access: learner` is refused with `terminal_host_not_allowed` / 4403; another
learner's lab is refused at spawn_service and at the orchestrator (handshake refused, 403). The hosts
that are marked (here the test ccna lab's workstation and router) each give a shell on that
very host, within the lab's one terminal cap.

Attack 2 (terminal sessions): a shell now outlives its sockets and is reattached by the next
open, so another learner (or a namesake in another tenant) might try to attach to it. Every
attach, first or not, passes the same ticket checks (owner, tenant, running lab, learner
host): they get nothing, and the shell keeps only its owner's socket.

Real spawn_service + orchestrator (uvicorn), nats-server, SQLite and the local lab runtime.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from urllib.parse import urlencode

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.tokens import TERMINAL, mint_token

from .test_terminal_cap import Lab, closed_with, lab  # noqa: F401 - the live platform

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]


def _open(lab: Lab, sid: str, headers: dict[str, str], host: str | None) -> ClientConnection:  # noqa: F811
    query = "?" + urlencode({"host": host}) if host is not None else ""
    url = lab.spawn_url.replace("http://", "ws://") + f"/v1/scenarios/{sid}/terminal{query}"
    return connect(url, additional_headers=headers, open_timeout=30, max_queue=None)


def _spawn_ccna(lab: Lab, headers: dict[str, str]) -> str:  # noqa: F811
    """A running lab of the ccna track (the test template lab-ccna)."""
    import httpx

    with httpx.Client(base_url=lab.spawn_url, timeout=60) as client:
        resp = client.post("/v1/spawn", json={"track": "ccna"}, headers=headers)
        assert resp.status_code == 201, resp.text
        sid = str(resp.json()["scenario_id"])
        deadline = time.monotonic() + 60
        while client.get(f"/v1/scenarios/{sid}", headers=headers).json()["state"] != "running":
            assert time.monotonic() < deadline, "lab never ran"
            time.sleep(0.1)
    return sid


def _hostname(ws: ClientConnection) -> str:
    """Type `hostname` in the terminal and return what the shell printed."""
    ws.send(b"echo \"host=$(hostname)=$((6*7))\"\n")
    seen = ""
    deadline = time.monotonic() + 30
    while True:
        data = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        seen += data.decode(errors="replace") if isinstance(data, bytes) else data
        for line in seen.splitlines():
            if line.startswith("host=") and line.endswith("=42"):
                return line[5:-3]


def test_terminals_open_on_learner_hosts_only(lab: Lab) -> None:  # noqa: F811
    alice = lab.learner("alice-hosts", plan="ENTERPRISE")
    sid = _spawn_ccna(lab, alice)
    with ExitStack() as stack:
        # Each learner host ("learner" and "router") is a shell on that host; no host named
        # means the learner host, as before (the same shell as "learner").
        ws1 = stack.enter_context(_open(lab, sid, alice, "learner"))
        ws2 = stack.enter_context(_open(lab, sid, alice, "router"))
        default = stack.enter_context(_open(lab, sid, alice, None))
        assert (_hostname(ws1), _hostname(ws2), _hostname(default)) == ("learner", "router",
                                                                        "learner")
        # The lab's terminal cap counts shells, one per host (test_terminal_cap).
        assert lab.held(sid) == 2

    # The lab's server (not for learners), and names the lab does not have: refused by the
    # orchestrator from the template, with the hosts it does offer.
    for host in ("target", "grader", "nosuchhost"):
        with _open(lab, sid, alice, host) as ws:
            control, code, reason = closed_with(ws)
        assert (control["error"], code) == ("terminal_host_not_allowed", 4403), host
        assert "(learner, router)" in control["message"] and reason == control["message"]
    assert lab.held(sid) == 2  # the two learner hosts' shells; none anywhere else
    # Not a host name at all: spawn_service refuses the handshake before minting anything.
    with pytest.raises(InvalidStatus) as refused:
        _open(lab, sid, alice, "../learner")
    assert refused.value.response.status_code == 403


def test_no_terminal_on_a_host_of_another_learners_lab(lab: Lab) -> None:  # noqa: F811
    alice, bob = lab.learner("alice-other"), lab.learner("bob-other")
    bobs = _spawn_ccna(lab, bob)
    alices = _spawn_ccna(lab, alice)
    # Through spawn_service: bob's lab is not alice's, whatever the host (the handshake is
    # refused before any ticket is minted).
    for host in ("learner", "router"):
        with pytest.raises(InvalidStatus) as refused:
            _open(lab, bobs, alice, host)
        assert refused.value.response.status_code == 403
    # At the orchestrator, even with a valid ticket for alice's own lab and a learner host:
    # the ticket is bound to her scenario, so bob's lab path is refused.
    token = mint_token(lab.orch.settings.sat, TERMINAL, {
        "scenario_id": alices, "sub": "alice-other", "tenant_id": "acme", "host": "router"})
    url = lab.orch_url.replace("http://", "ws://") + f"/internal/scenarios/{bobs}/tty?host=router"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"x-forge-terminal": token}, open_timeout=30)
    assert refused.value.response.status_code == 403
    # A ticket for her own lab's router while the request names another host: refused too.
    url = lab.orch_url.replace("http://", "ws://") + f"/internal/scenarios/{alices}/tty?host=target"
    with connect(url, additional_headers={"x-forge-terminal": token}, open_timeout=30) as ws:
        control, code, _ = closed_with(ws)
    assert (control["error"], code) == ("terminal_host_mismatch", 4403)
    assert lab.held(bobs) == 0 and lab.held(alices) == 0


def test_no_one_else_attaches_to_a_learners_live_shell(lab: Lab) -> None:  # noqa: F811
    """Terminal sessions outlive their sockets, so a live shell is worth stealing: another
    learner of the tenant, or a learner of the same name in another tenant, can never attach
    to it, through spawn_service or with a terminal ticket of their own at the node. Every
    attach passes the same owner checks as a first open."""
    alice = lab.learner("alice-shell")
    sid = lab.spawn_running(alice)
    with _open(lab, sid, alice, "learner") as mine:
        mine.send(b"export SECRET=alice-$((2*3)); echo set-$((1+1))\n")
        seen = b""
        while b"set-2" not in seen:
            data = mine.recv(timeout=30)
            seen += data if isinstance(data, bytes) else data.encode()
        bob = lab.learner("bob-shell")
        db = lab.orch.ctx.db
        grant(db, "evil", "PRO", "alice-shell")
        namesake = {"x-api-key": create_api_key(db, "evil", "alice-shell").plaintext}
        for stranger in (bob, namesake):  # through spawn_service: not their lab
            with pytest.raises(InvalidStatus) as refused:
                _open(lab, sid, stranger, "learner")
            assert refused.value.response.status_code == 403
        url = lab.orch_url.replace("http://", "ws://") + f"/internal/scenarios/{sid}/tty"
        for sub, tenant in (("bob-shell", "acme"), ("alice-shell", "evil")):
            ticket = mint_token(lab.orch.settings.sat, TERMINAL, {
                "scenario_id": sid, "sub": sub, "tenant_id": tenant, "host": "learner"})
            with pytest.raises(InvalidStatus) as refused:
                connect(url, additional_headers={"x-forge-terminal": ticket}, open_timeout=30)
            assert refused.value.response.status_code == 403
        sessions = lab.orch.terminal_sessions.of_lab(sid)
        assert [len(s.attached) for s in sessions] == [1]  # only alice's own socket
