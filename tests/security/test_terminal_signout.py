"""Signing out closes every terminal, and a signed-out cookie opens none (issue 17, item 2).

Attack: sign out in one tab while the lab's terminal runs in another (or on a shared
computer). Sign-out only cleared the cookies: the other tab's terminal kept running commands,
and the session cookie itself (copied before sign-out, or left in a second browser profile)
still opened terminals and pages until it expired hours later. Now sign-out revokes the
session (refused by every replica), closes at once every terminal socket that session opened
(`signed_out` / 4401), and ends the learner's shells on the lab node; the old cookie gets no
terminal and no page. The node's internal sign-out call takes only spawn_service's
terminal-close ticket for that lab's own learner (anything else closes nothing).

Real spawn_service + orchestrator (uvicorn), nats-server, SQLite and the local lab runtime
(the `lab` fixture of test_terminal_cap).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from forge.identity.apikeys import create_api_key
from forge.services.spawn.web.security import csrf_token
from forge.stack.lock import StorageLock
from forge.tokens import TERMINAL, TERMINAL_CLOSE, mint_token

from ..cli.test_storage_option import forge
from .test_terminal_cap import Lab, closed_with, lab, round_trip

__all__ = ["lab"]  # the module-scoped live platform
pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]


def _cookie_terminal(lab: Lab, sid: str, cookie: str) -> ClientConnection:
    url = lab.spawn_url.replace("http://", "ws://") + f"/v1/scenarios/{sid}/terminal"
    return connect(url, additional_headers={"Cookie": f"forge_session={cookie}"},
                   open_timeout=30, max_queue=None)


def test_sign_out_closes_every_terminal_and_the_cookie_opens_no_more(lab: Lab) -> None:
    headers = lab.learner("sofia")
    sid = lab.spawn_running(headers)
    key = create_api_key(lab.orch.ctx.db, "acme", "sofia").plaintext
    origin = {"origin": lab.spawn_url}
    with httpx.Client(base_url=lab.spawn_url, timeout=60) as browser:
        signed_in = browser.post("/signin", data={"api_key": key}, headers=origin)
        assert signed_in.status_code == 303, signed_in.text
        cookie = browser.cookies["forge_session"]
        with _cookie_terminal(lab, sid, cookie) as tab1, \
                _cookie_terminal(lab, sid, cookie) as tab2:
            round_trip(tab1, "tab1")
            round_trip(tab2, "tab2")
            assert lab.held(sid) == 1

            csrf = csrf_token(lab.orch.settings, cookie)  # the sign-out form holds it (one SAT)
            assert browser.post("/signout", data={"csrf": csrf},
                                headers=origin).status_code == 303
            assert lab.held(sid) == 0  # the node's shell is gone when sign-out answers
            for tab in (tab1, tab2):
                control, code, _ = closed_with(tab)
                assert (control["error"], code) == ("signed_out", 4401)
                assert "You signed out" in control["message"]

    # The cookie as it was before sign-out: no terminal, no lab status.
    with pytest.raises(InvalidStatus) as refused:
        _cookie_terminal(lab, sid, cookie)
    assert refused.value.response.status_code == 403
    stale = httpx.get(f"{lab.spawn_url}/v1/scenarios/{sid}", timeout=60,
                      cookies={"forge_session": cookie})
    assert stale.status_code == 401
    assert lab.held(sid) == 0
    # The learner's other credentials still work: a new terminal is a new shell.
    with lab.open(sid, headers) as again:
        round_trip(again, "after-sign-in")


def test_only_spawn_services_ticket_for_the_labs_learner_closes_its_terminals(lab: Lab) -> None:
    """The node's sign-out call is internal and fails closed: no ticket, a ticket of another
    kind, or one for another learner closes nothing."""
    headers = lab.learner("tomas")
    sid = lab.spawn_running(headers)
    url = f"{lab.orch_url}/internal/scenarios/{sid}/terminals/close"
    sat = lab.orch.settings.sat
    with lab.open(sid, headers) as ws:
        round_trip(ws, "kept")
        attempts = {
            "": 401,
            mint_token(sat, TERMINAL, {"scenario_id": sid, "sub": "tomas",
                                       "tenant_id": "acme", "host": "learner"}): 401,
            mint_token(sat, TERMINAL_CLOSE, {"scenario_id": sid, "sub": "mallory",
                                             "tenant_id": "acme"}): 404,
            mint_token(sat, TERMINAL_CLOSE, {"scenario_id": sid, "sub": "tomas",
                                             "tenant_id": "evil"}): 404,
        }
        for ticket, status in attempts.items():
            resp = httpx.post(url, headers={"x-forge-terminal": ticket}, timeout=60)
            assert resp.status_code == status, resp.text
        assert lab.held(sid) == 1
        round_trip(ws, "still-kept")
        own = mint_token(sat, TERMINAL_CLOSE, {"scenario_id": sid, "sub": "tomas",
                                               "tenant_id": "acme"})
        resp = httpx.post(url, headers={"x-forge-terminal": own}, timeout=60)
        assert (resp.status_code, resp.json()) == (200, {"closed": 1})
        control, code, _ = closed_with(ws)
        assert (control["error"], code) == ("signed_out", 4401)


def test_an_operator_revoking_a_key_closes_the_terminal_it_opened(lab: Lab) -> None:
    """A stolen key the operator revokes with `forge apikey revoke`: the thief's terminal,
    a socket already past the key check, closes too (before, only the browser route that
    replaces a key closed terminals; the CLI revoked the row and the shell ran on)."""
    issued = create_api_key(lab.orch.ctx.db, "acme", "ulla")
    lab.learner("ulla")  # the plan grant (and the learner's own, unstolen key)
    thief = {"x-api-key": issued.plaintext}
    sid = lab.spawn_running(thief)
    # As beside `forge up` on its own ports: the operator's shell has no ORCHESTRATOR_URL,
    # the storage root's lock records where the orchestrator listens (it was called at the
    # default :8083 instead, and the thief's terminal stayed open).
    operator: dict[str, str | None] = {**lab.environ, "ORCHESTRATOR_URL": None}
    up = StorageLock.acquire(Path(lab.environ["STORAGE_ROOT"]))
    up.note_services({"ORCHESTRATOR_URL": lab.orch_url})
    with lab.open(sid, thief) as ws:
        round_trip(ws, "stolen")
        try:
            code, out, err = forge(operator, "apikey", "revoke", issued.key_id)
        finally:
            up.release()
        assert code == 0, err
        assert out.splitlines() == [f"revoked {issued.key_id}",
                                    "closed 1 open terminal session(s) of ulla"]
        control, close_code, _ = closed_with(ws)
        assert close_code == 4401, control
    assert lab.held(sid) == 0
    with pytest.raises(InvalidStatus):
        lab.open(sid, thief)
    # A key already revoked: exit 1, no terminal touched.
    code, _, err = forge(dict(lab.environ), "apikey", "revoke", issued.key_id)
    assert (code, err.strip()) == (1, f"no live key {issued.key_id}")
