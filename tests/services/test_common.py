"""Behaviour every service shares: health, readiness, metrics, errors, request ids, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import text

from forge.bus import NatsServer
from forge.config import load_settings
from forge.errors import ForgeError
from forge.services.common.app import config_summary, create_app, make_context
from forge.services.common.auth import check_operator
from forge.services.common.logging import JsonFormatter, Redactor
from forge.services.common.readiness import CheckFailed
from forge.services.common.request_checks import request_checks
from forge.services.common.serving import ServiceName, build_service
from forge.store import wal_checkpoints
from forge.store.sqlite_files import sqlite_file

from .conftest import SECRETS, prod_environ

OPERATOR = {"Authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}


def test_healthz_is_liveness_only(service_client: TestClient) -> None:
    resp = service_client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


def test_readyz_green_with_valid_config(service_client: TestClient) -> None:
    resp = service_client.get("/readyz", headers=OPERATOR)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready"
    assert {"config", "store", "storage"} <= set(body["checks"])


def test_metrics_exposed(service_client: TestClient) -> None:
    service_client.get("/healthz")
    resp = service_client.get("/metrics")
    assert resp.status_code == 200
    assert "forge_http_requests_total" in resp.text
    assert 'route="/healthz"' in resp.text


def test_openapi_published(service_client: TestClient) -> None:
    resp = service_client.get("/openapi.json")
    assert resp.status_code == 200
    assert "/readyz" in resp.json()["paths"]


def test_request_id_echoed_or_generated(service_client: TestClient) -> None:
    assert service_client.get("/healthz", headers={"x-request-id": "abc-123"}).headers[
        "x-request-id"
    ] == "abc-123"
    generated = service_client.get("/healthz", headers={"x-request-id": "bad id\n"}).headers[
        "x-request-id"
    ]
    assert generated != "bad id\n" and len(generated) == 32


def test_unknown_route_uses_error_shape(service_client: TestClient) -> None:
    resp = service_client.get("/nope")
    assert resp.status_code == 404
    assert resp.json() == {"error": "not_found", "message": "path: no such route on this "
                           "service", "details": [{"field": "path"}]}
    # A known path, another method: the field is the method, with the ones it takes.
    wrong = service_client.post("/healthz")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET", wrong.text
    assert wrong.json() == {"error": "method_not_allowed", "message": "method: POST is not "
                            "allowed on this path; use GET",
                            "details": [{"field": "method", "allowed": ["GET"]}]}


def test_readyz_names_each_failed_check(tmp_path: Path, db_url: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    env = prod_environ(blocker / "storage", FORGE_DB_URL=db_url)
    app = build_service(ServiceName.scoreboard, load_settings(env))
    with TestClient(app) as client:
        resp = client.get("/readyz", headers=OPERATOR)
    assert resp.status_code == 503
    body = resp.json()
    assert "storage" in body["failed"]
    assert body["error"] == "not_ready"
    assert "not writable" in body["checks"]["storage"]["detail"]
    assert body["checks"]["store"]["ok"] is True


def test_readyz_runs_only_the_checks_asked_for(
        tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """`?check=` runs the named checks only (a peer asking for one detail): the others are
    neither run nor reported, a failing one left out does not fail the answer nor count
    as recovered in the log, and an unknown name is a 400 naming the field."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    env = prod_environ(blocker / "storage", FORGE_DB_URL=db_url)
    app = build_service(ServiceName.scoreboard, load_settings(env))
    with caplog.at_level(logging.INFO, logger="forge.readiness"), TestClient(app) as client:
        assert client.get("/readyz", headers=OPERATOR).status_code == 503  # storage fails
        only = client.get("/readyz", params={"check": "config"}, headers=OPERATOR)
        both = client.get("/readyz", params=[("check", "config"), ("check", "storage")],
                          headers=OPERATOR)
        public = client.get("/readyz?check=store")
        bad = client.get("/readyz?check=nope", headers=OPERATOR)
        bad_public = client.get("/readyz?check=nope")
        many = client.get("/readyz?" + "&".join(["check=config"] * 17))
    assert only.status_code == 200, only.text
    assert set(only.json()["checks"]) == {"config"}
    assert only.json()["checks"]["config"]["detail"]["keyring"]
    assert both.status_code == 503 and both.json()["failed"] == ["storage"]
    assert set(both.json()["checks"]) == {"config", "storage"}
    assert public.status_code == 200 and public.json() == {
        "status": "ready", "failed": [], "service": "scoreboard"}
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
    assert "check" in bad.json()["message"] and "'nope'" in bad.json()["message"]
    assert "storage" in bad.json()["message"]  # the operator learns which there are
    assert bad_public.status_code == 400 and "storage" not in bad_public.text  # no one else
    assert many.status_code == 422 and "check" in many.text  # bounded, like all input
    assert not [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len([r for r in caplog.records if "check storage failed" in r.getMessage()]) == 1
    # The config check's answer is made once per process (its settings never change):
    # the peers asking every few seconds do not have its key ids and HMAC remade each time.
    ctx = app.state.ctx
    runs = [asyncio.run(ctx.readiness.run(frozenset({"config"})))[1] for _ in range(2)]
    assert runs[0]["checks"]["config"]["detail"] is runs[1]["checks"]["config"]["detail"]
    assert only.json()["checks"]["config"]["detail"] == config_summary(ctx.settings)


class Body(BaseModel):
    track: str
    count: int


def _app_with_routes(tmp_path: Path) -> FastAPI:
    settings = load_settings(prod_environ(tmp_path))
    ctx = make_context("test", settings)

    def leaky_check() -> str:
        raise CheckFailed(f"cannot use postgresql://u:{SECRETS['SAT_HMAC_SECRET']}@db/x")

    ctx.readiness.add("leaky", leaky_check)
    app = create_app(ctx)

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, str]:
        return {"track": body.track}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals " + SECRETS["ET_HMAC_SECRET"])

    @app.get("/conflict")
    async def conflict() -> None:
        raise ForgeError("request_conflict", 409, "request_id reused with a different body",
                         [{"field": "track"}])

    @app.get("/operator")
    async def operator(request: Request) -> dict[str, bool]:
        await check_operator(request, settings, "test")
        return {"ok": True}

    return app


@pytest.mark.usefixtures("sqlite_only_store")
def test_validation_error_names_fields(tmp_path: Path) -> None:
    with TestClient(_app_with_routes(tmp_path)) as client:
        resp = client.post("/echo", json={"track": 5})
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "validation_error"
    fields = {d["field"] for d in body["details"]}
    assert fields == {"track", "count"}
    assert "track" in body["message"] and "count" in body["message"]


@pytest.mark.usefixtures("sqlite_only_store")
def test_request_checks_run_as_one_dependency_in_their_old_place(tmp_path: Path) -> None:
    """The repeated-query and unexpected-body checks are one app-wide dependency (each
    dependency costs every request a nested solve), and keep their place among refusals:
    after routing and after FastAPI reads a body the route takes, before the route's own
    parameters; the query check before the body check."""
    app = _app_with_routes(tmp_path)
    assert [d.dependency for d in app.router.dependencies] == [request_checks]

    @app.get("/v1/items/{n}")
    async def item(n: int) -> dict[str, int]:
        return {"n": n}

    client = TestClient(app)
    twice = {"field": "x", "problem": "given more than once"}
    bad_json = client.post("/echo?x=1&x=2", content=b"{",
                           headers={"content-type": "application/json"})
    assert bad_json.json()["error"] == "invalid_body"  # the body is read first
    for resp in (client.post("/echo?x=1&x=2", json={"track": "t", "count": 1}),
                 client.get("/v1/items/notint?x=1&x=2"),
                 client.request("GET", "/v1/items/notint?x=1&x=2", content=b"b")):
        assert resp.status_code == 422 and resp.json()["details"] == [twice], resp.text
    body = client.request("GET", "/v1/items/notint", content=b"b")
    assert body.status_code == 400 and body.json()["error"] == "unexpected_body"
    assert client.get("/v1/items/notint").json()["details"][0]["field"] == "n"
    assert client.get("/v1/nowhere?x=1&x=2").status_code == 404


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_service_on_sqlite_checkpoints_the_wal_itself_not_in_a_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite checkpointed inside the commit that took the WAL past 1000 pages: a
    # request's commit copied ~4 MiB and synced it (`forge.store.wal_checkpoints`).
    monkeypatch.setattr(wal_checkpoints, "CHECKPOINT_EVERY_S", 0.05)
    app = _app_with_routes(tmp_path)
    db = app.state.ctx.db
    path = sqlite_file(db.url)
    assert path is not None
    with TestClient(app):
        with db.session() as sess:
            sess.execute(text("CREATE TABLE blobs (b BLOB)"))
        for _ in range(60):  # 1500 pages of 4 KiB
            with db.session() as sess:
                sess.execute(text("INSERT INTO blobs VALUES (:b)"), {"b": os.urandom(102400)})
        deadline = time.monotonic() + 30
        while path.stat().st_size < 1500 * 4096 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert path.stat().st_size >= 1500 * 4096  # copied into the database file


@pytest.mark.usefixtures("sqlite_only_store")
def test_unhandled_error_hides_internals(tmp_path: Path) -> None:
    with TestClient(_app_with_routes(tmp_path), raise_server_exceptions=False) as client:
        resp = client.get("/boom")
    assert resp.status_code == 500
    assert resp.json()["error"] == "internal_error"
    assert "secret internals" not in resp.text and "Traceback" not in resp.text
    assert resp.headers["connection"] == "close"  # the server drops the connection after it


@pytest.mark.usefixtures("sqlite_only_store")
def test_api_error_shape(tmp_path: Path) -> None:
    with TestClient(_app_with_routes(tmp_path)) as client:
        resp = client.get("/conflict")
    assert resp.status_code == 409
    assert resp.json() == {"error": "request_conflict",
                           "message": "request_id reused with a different body",
                           "details": [{"field": "track"}]}


@pytest.mark.usefixtures("sqlite_only_store")
def test_readiness_detail_never_shows_secrets(tmp_path: Path) -> None:
    with TestClient(_app_with_routes(tmp_path)) as client:
        resp = client.get("/readyz", headers=OPERATOR)
    assert resp.status_code == 503
    detail = resp.json()["checks"]["leaky"]["detail"]
    assert SECRETS["SAT_HMAC_SECRET"] not in detail
    assert "postgresql://***@db/x" in detail


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Bearer wrong-token", 401),
        ("Basic " + SECRETS["OPERATOR_TOKEN"], 401),
        ("Bearer " + SECRETS["OPERATOR_TOKEN"], 200),
    ],
)
@pytest.mark.usefixtures("sqlite_only_store")
def test_operator_auth(tmp_path: Path, header: str | None, status: int) -> None:
    headers = {"authorization": header} if header else {}
    with TestClient(_app_with_routes(tmp_path)) as client:
        resp = client.get("/operator", headers=headers)
    assert resp.status_code == status
    if status == 401:
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert resp.json()["error"] == "unauthorized"


def test_log_lines_are_json_and_redacted() -> None:
    secret = SECRETS["RECEIPT_HMAC_SECRET"].encode()
    formatter = JsonFormatter("spawn_service", Redactor([secret]))
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
    record = logging.LogRecord("forge.test", logging.WARNING, __file__, 1,
                               "secret=%s token=%s auth=Bearer abcdef", (secret.decode(), token),
                               None)
    line = formatter.format(record)
    entry = json.loads(line)
    assert entry["service"] == "spawn_service" and entry["level"] == "warning"
    assert secret.decode() not in line
    assert token not in line
    assert "abcdef" not in line
    assert "[redacted]" in entry["msg"] and "[token]" in entry["msg"]


@pytest.mark.usefixtures("sqlite_only_store")
def test_access_log_has_request_id_and_no_query(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, nats: NatsServer
) -> None:
    app = build_service(ServiceName.spawn, load_settings(prod_environ(tmp_path, **nats.client_env())))
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="forge.access"):
        client.get("/healthz?token=eyJsecret", headers={"x-request-id": "rid-42"})
        client.get("/readyz?token=eyJsecret", headers={"x-request-id": "rid-43"})
    lines = [r for r in caplog.records if r.name == "forge.access"]
    assert lines and all("eyJsecret" not in r.getMessage() for r in lines)
    assert any(r.getMessage() == "GET /readyz 200" for r in lines)


def test_json_answers_are_not_stored_nor_sniffed(service_client: TestClient) -> None:
    """A receipt (30 days) or an access link travels in a JSON answer: a shared browser or
    a proxy must not keep it."""
    for path in ("/healthz", "/no-such-route"):
        resp = service_client.get(path)
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.headers["cache-control"] == "no-store"
        assert resp.headers["x-content-type-options"] == "nosniff"


def test_no_script_pages_from_a_cdn(service_client: TestClient) -> None:
    """FastAPI's /docs and /redoc load their scripts from a public CDN without an integrity
    hash, on the learner UI's origin: not served."""
    for path in ("/docs", "/redoc"):
        assert service_client.get(path).status_code == 404
