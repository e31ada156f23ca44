"""Attack: pass something else off as spawn_service's service token.

spawn_service signs its calls to the orchestrator, lab nodes and the scoreboard with a
one-minute service token from the SAT keyring (audit AS: the rotation order of the
customer's runbook never rolls OPERATOR_TOKEN out to spawn_service, which lost every such
call). Those routes take operator powers, so only that token and OPERATOR_TOKEN open
them: not a learner's session or access token or a SAT (the same keyring, other types),
not a service token naming another caller, signed with another secret, or expired. Checked
on the scoreboard's operator-only summaries route and on the shared credential check.

A service token is made for one request (method, target, body digest): whatever receives
it in place of the service it was meant for (a local user on that port during a restart)
can send that same request again within the minute, nothing else. The tokens below are
made as spawn_service makes them (`Backend`), caught by a stand-in on the port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.config import Settings, load_settings
from forge.config.keyring import HmacKeyring
from forge.services.common.auth import RequestTarget, operator_credential, service_token
from forge.services.common.http_client import SharedHttpClient
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.services.spawn.web.backend import Backend
from forge.tokens import ACCESS, SAT, SERVICE, SESSION, mint_token

from ..services.conftest import prod_environ
from ..support.http_stub import serving

SUMMARIES = "/v1/admin/scores/summaries"
BODY = b'{"scenario_ids": ["scn-0000000000000001"]}'
OTHER_BODY = b'{"scenario_ids": ["scn-0000000000000002"]}'
BOUND = RequestTarget.of("scoreboard", "POST", SUMMARIES, BODY)


@contextmanager
def _board(tmp_path: Path, db_url: str) -> Iterator[tuple[Settings, TestClient]]:
    settings = load_settings(prod_environ(tmp_path / "storage", FORGE_DB_URL=db_url))
    with TestClient(build_scoreboard(settings)) as board:
        yield settings, board


def _post(board: TestClient, token: str, path: str = SUMMARIES, body: bytes = BODY) -> int:
    return board.post(path, content=body, headers={
        "authorization": "Bearer " + token, "content-type": "application/json"}).status_code


def _claims(**extra: str) -> dict[str, str]:
    return {"sub": "spawn_service", "svc": "scoreboard", "htm": "POST", "htu": SUMMARIES,
            "bh": BOUND.body_sha256, **extra}


def test_only_a_real_service_token_or_the_operator_token_open_operator_routes(
        tmp_path: Path, db_url: str) -> None:
    with _board(tmp_path, db_url) as (settings, board):
        _only_real_tokens(settings, board)


def _only_real_tokens(settings: Settings, board: TestClient) -> None:
    assert _post(board, service_token(settings, BOUND)) == 200
    assert _post(board, settings.operator.current.decode()) == 200
    learner = {"sub": "lea", "tenant_id": "acme"}
    forged = {
        "session": mint_token(settings.sat, SESSION, {**learner, "scope": "learner"}),
        "access": mint_token(settings.sat, ACCESS, {**learner,
                                                    "scenario_id": "scn-0000000000000001"}),
        "sat": mint_token(settings.sat, SAT, {**learner, "scenario_id": "scn-0000000000000001",
                                              "track": "netplus", "template_id": "x",
                                              "plan": "PRO", "et_jti": "j"}),
        "other caller": mint_token(settings.sat, SERVICE, _claims(sub="lea")),
        "other secret": mint_token(HmacKeyring("SAT_HMAC_SECRET", b"s" * 32), SERVICE,
                                   _claims()),
        "expired": mint_token(settings.sat, SERVICE, _claims(), now=time.time() - 3600),
        "not a token": "spawn_service",
    }
    for what, token in forged.items():
        assert _post(board, token) == 401, what
        assert not operator_credential(token, settings, BOUND), what


def test_a_service_token_opens_the_request_it_was_made_for_and_no_other(
        tmp_path: Path, db_url: str) -> None:
    with _board(tmp_path, db_url) as (settings, board):
        _bound_to_one_request(settings, board)


def _bound_to_one_request(settings: Settings, board: TestClient) -> None:
    token = service_token(settings, BOUND)
    auth = {"authorization": "Bearer " + token}
    assert _post(board, token, body=OTHER_BODY) == 401  # another body
    # Another query: not this token's request (and a parameter the route does not take is
    # refused by name before any credential is read).
    assert not operator_credential(token, settings, RequestTarget.of(
        "scoreboard", "POST", SUMMARIES + "?x=1", BODY))
    assert _post(board, token, path=SUMMARIES + "?x=1") == 422
    # The bound target at the end of another request's (review BV: a suffix was accepted,
    # so the /ops page's `GET /readyz` token opened every GET route by `?x=/readyz`).
    readyz = {"authorization": "Bearer " + service_token(
        settings, RequestTarget.of("scoreboard", "GET", "/readyz", b""))}
    assert board.get("/readyz", headers=readyz).status_code in (200, 503)
    for other in ("/v1/admin/signing-keys?x=/readyz", "/v1/admin/retention/holds?/readyz",
                  "/v1/admin/failed-events?limit=5&z=/readyz"):
        assert not operator_credential(readyz["authorization"].removeprefix("Bearer "),
                                       settings, RequestTarget.of("scoreboard", "GET", other,
                                                                  b"")), other
        assert board.get(other, headers=readyz).status_code == 422, other  # unknown name
    assert board.get("/v1/admin/failed-events?limit=5", headers=readyz).status_code == 401
    assert board.get("/v1/admin/signing-keys", headers=auth).status_code == 401  # another path
    assert board.get(SUMMARIES, headers=auth).status_code in (401, 405)  # another method
    for service, method, target, body in (
            ("scoreboard", "GET", SUMMARIES, BODY), ("scoreboard", "POST", "/v1/admin/x", BODY),
            ("scoreboard", "POST", SUMMARIES, OTHER_BODY),
            ("scoreboard", "POST", "/x?" + SUMMARIES, BODY),
            ("orchestrator", "POST", SUMMARIES, BODY)):  # the same call at another service
        other = RequestTarget.of(service, method, target, body)
        assert not operator_credential(token, settings, other), other
    # Bound to another service, path, method or body: nothing here.
    for claims in (_claims(htu="summaries"), _claims(htu="/scores/summaries"),
                   _claims(svc="orchestrator"), _claims(htm="GET"), _claims(bh="0" * 64)):
        assert _post(board, mint_token(settings.sat, SERVICE, claims)) == 401
    with pytest.raises(ValueError, match="needs claims"):  # none is minted bound to nothing
        mint_token(settings.sat, SERVICE, {"sub": "spawn_service"})
    # The request it was made for, sent again: what a replay can do, and no more.
    assert _post(board, token) == 200


class _Catcher(BaseHTTPRequestHandler):
    heard: list[tuple[str, str, bytes, str]]

    def _catch(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.heard.append((self.command, self.path, body,
                           self.headers.get("Authorization", "").removeprefix("Bearer ")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _catch

    def log_message(self, *_args: object) -> None:
        pass


def test_spawn_services_calls_carry_a_token_for_that_call_alone(
        tmp_path: Path, db_url: str) -> None:
    """The tokens spawn_service's `Backend` sends, caught where the scoreboard should be."""
    heard: list[tuple[str, str, bytes, str]] = []
    with serving(type("Catcher", (_Catcher,), {"heard": heard})) as url:
        spawn_settings = load_settings(prod_environ(tmp_path / "spawn", SCOREBOARD_URL=url))

        async def calls() -> None:
            shared = SharedHttpClient(timeout_s=5.0)
            backend = Backend(spawn_settings, shared)
            await backend.scoreboard("POST", SUMMARIES,
                                     json={"scenario_ids": ["scn-0000000000000001"]})
            await backend.scoreboard("GET", "/v1/admin/failed-events", params={"limit": 5})
            await shared.close()

        asyncio.run(calls())
    with _board(tmp_path, db_url) as (_, board):
        _each_opens_its_own(board, heard)


def _each_opens_its_own(board: TestClient, heard: list[tuple[str, str, bytes, str]]) -> None:
    (post_method, post_path, post_body, post_token), (_, get_path, _, get_token) = heard
    assert (post_method, post_path, get_path) == ("POST", SUMMARIES,
                                                  "/v1/admin/failed-events?limit=5")
    # At the real scoreboard: each opens its own request, not the other's, nor other bodies.
    assert _post(board, post_token, body=post_body) == 200
    assert _post(board, post_token, body=OTHER_BODY) == 401
    assert _post(board, get_token, body=post_body) == 401
    auth = {"authorization": "Bearer " + get_token}
    assert board.get("/v1/admin/failed-events", headers=auth).status_code == 401  # limit=5 only
    assert board.get("/v1/admin/failed-events?limit=5", headers=auth).status_code == 200


@pytest.mark.parametrize("cut", [1, 10])
def test_a_tampered_service_token_is_refused(tmp_path: Path, cut: int) -> None:
    settings = load_settings(prod_environ(tmp_path / "storage"))
    token = service_token(settings, BOUND)
    tampered = token[:-cut] + ("Q" if token[-cut] in "ABCD" else "A") + token[len(token) - cut + 1:]
    assert operator_credential(token, settings, BOUND)
    assert not operator_credential(tampered, settings, BOUND)
