"""A local user who takes the orchestrator's port while it is down (step 3 of the rotation
order restarts it) and answers what spawn_service and the scoreboard send it every few
seconds gets nothing it can use elsewhere. They used to ask the orchestrator's key ids with
a one-minute service token, which every service takes as an operator's, and then with
OPERATOR_TOKEN itself. Now each sends a proof (`forge.services.common.peer_proof`): no
secret, no operator credential anywhere; at a real service it opens the key ids alone
(the config readiness check), once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from forge.config.settings import Settings, load_settings
from forge.services.common.app import create_app, make_context
from forge.services.common.auth import RequestTarget, check_operator, operator_credential
from forge.services.common.http_client import SharedHttpClient
from forge.services.common.readiness import CheckFailed
from forge.services.scoreboard.verifier_keys import verifier_keys, verifier_keys_check
from forge.services.spawn.peers import paced_peer_keys, peer_keys_check

from ..services.conftest import SECRETS, prod_environ
from ..support.http_stub import serving


class _Squatter(BaseHTTPRequestHandler):
    heard: list[str]

    def do_GET(self) -> None:
        self.heard.append(self.headers.get("Authorization", ""))
        body = b'{"error": {"code": "unauthorized"}}'
        self.send_response(401)  # refused: a peer with a second credential sends it too
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def squatter() -> Iterator[tuple[str, list[str]]]:
    heard: list[str] = []
    handler = type("Handler", (_Squatter,), {"heard": heard})
    with serving(handler) as url:
        yield url, heard


def _harvest(tmp_path: Path, squatter: tuple[str, list[str]]) -> tuple[Settings, list[str]]:
    """Settings of services whose ORCHESTRATOR_URL is the squatter's, and what it received
    when spawn_service's and the scoreboard's key checks ran once each."""
    url, heard = squatter
    settings = load_settings(prod_environ(tmp_path / "storage", ORCHESTRATOR_URL=url))

    async def both() -> None:
        async with httpx.AsyncClient() as client:
            with pytest.raises(CheckFailed):  # spawn_service: "does not accept ... SAT"
                await peer_keys_check(settings, client)
            with pytest.raises(CheckFailed):  # the scoreboard: "... OPERATOR_TOKEN"
                await verifier_keys_check(settings, client)
    asyncio.run(both())
    assert all(h.startswith("Bearer fgp1.") for h in heard)
    return settings, [h.removeprefix("Bearer ") for h in heard]


class _Retired:
    """An OPERATOR_TOKEN filter saying each of the service's own tokens was retired."""

    async def allows(self, token: str) -> bool:
        return False

    async def vouches(self, token: str) -> bool:
        return False


@pytest.mark.usefixtures("sqlite_only_store")
def test_what_the_peers_send_a_squatter_opens_nothing_but_the_key_ids_once(
        tmp_path: Path, squatter: tuple[str, list[str]]) -> None:
    settings, harvested = _harvest(tmp_path, squatter)
    assert len(harvested) == 3  # spawn: a SAT proof, then an OPERATOR_TOKEN one; the scoreboard's
    for token in harvested:
        assert not any(secret in token for secret in SECRETS.values())
        for service in ("orchestrator", "scoreboard", "spawn_service"):
            for target in ("/readyz?check=config", "/v1/scenarios"):
                bound = RequestTarget.of(service, "GET", target, b"")  # nowhere an operator's
                assert not operator_credential(token, settings, bound)

    # A real service, with an operator route, takes them for the key ids alone, once.
    ctx = make_context("orchestrator", settings)
    app = create_app(ctx)

    @app.get("/operator")
    async def operator(request: Request) -> dict[str, bool]:
        await check_operator(request, settings, ctx.name)
        return {"ok": True}

    with TestClient(app) as client:
        for token in harvested:
            auth = {"Authorization": f"Bearer {token}"}
            assert client.get("/operator", headers=auth).status_code == 401
            assert client.get("/readyz", headers=auth).status_code == 401  # every check
            both = client.get("/readyz", params=[("check", "config"), ("check", "store")],
                              headers=auth)
            assert both.status_code == 401
            first = client.get("/readyz", params={"check": "config"}, headers=auth)
            assert first.status_code == 200, first.text
            detail = first.json()["checks"]["config"]["detail"]
            assert set(detail["keyring"]) >= {"SAT_HMAC_SECRET", "OPERATOR_TOKEN"}
            assert not any(secret in first.text for secret in SECRETS.values())
            again = client.get("/readyz", params={"check": "config"}, headers=auth)
            assert again.status_code == 401  # taken already


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_proof_of_a_retired_operator_token_is_refused(
        tmp_path: Path, squatter: tuple[str, list[str]]) -> None:
    settings, harvested = _harvest(tmp_path, squatter)
    sat_proof, operator_proof = harvested[:2]  # spawn's: SAT, then OPERATOR_TOKEN
    ctx = make_context("orchestrator", settings)
    ctx.operator_keys = _Retired()
    with TestClient(create_app(ctx)) as client:
        refused = client.get("/readyz", params={"check": "config"},
                             headers={"Authorization": f"Bearer {operator_proof}"})
        assert refused.status_code == 401
        # The SAT proof is not about OPERATOR_TOKEN: still the key ids, once.
        taken = client.get("/readyz", params={"check": "config"},
                           headers={"Authorization": f"Bearer {sat_proof}"})
        assert taken.status_code == 200


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_proof_for_the_orchestrator_opens_nothing_at_another_service(
        tmp_path: Path, squatter: tuple[str, list[str]]) -> None:
    settings, harvested = _harvest(tmp_path, squatter)
    for name in ("scoreboard", "spawn_service"):
        with TestClient(create_app(make_context(name, settings))) as client:
            for token in harvested:
                answer = client.get("/readyz", params={"check": "config"},
                                    headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 401, name


def test_anonymous_readiness_runs_do_not_make_the_peers_ask_each_time(
        tmp_path: Path, squatter: tuple[str, list[str]]) -> None:
    """Anyone may run /readyz. Each run of the peer_keys checks used to ask the orchestrator
    (a fresh proof each time): a flood of runs became one at the orchestrator (review BV).
    Now one ask at a time, and an outcome stands a moment (an agreement longer)."""
    url, heard = squatter
    settings = load_settings(prod_environ(tmp_path / "storage", ORCHESTRATOR_URL=url))

    async def flood() -> None:
        http = SharedHttpClient(timeout_s=2.0)
        for check in (paced_peer_keys(settings, http).check,
                      verifier_keys(settings, http).check):
            for _ in range(5):  # concurrent runs, then more at once
                results = await asyncio.gather(*(check() for _ in range(20)),
                                               return_exceptions=True)
                assert all(isinstance(r, CheckFailed) for r in results)
        await http.close()

    asyncio.run(flood())
    assert 1 <= len(heard) <= 2 + 1  # spawn: one ask (two proofs); the scoreboard: one
