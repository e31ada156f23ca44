"""Attack: say one thing to whatever sits in front of Forge and another to Forge, in the
query string.

`GET /v1/scenarios?limit=5000&limit=10` was answered with ten rows: FastAPI hands a route
the last value of a repeated parameter, so a gateway, a WAF or an audit proxy that reads
the first (and caps `limit` at 1000) saw another request than the one Forge served, and
the sender never learned one value was dropped. Every route of every service now refuses a
query parameter given twice with 422 `validation_error` naming it, before it does anything,
as forms and JSON bodies already do; a parameter the route takes as a list
(`/readyz?check=`) may still repeat. A page says so on its HTML error page; the terminal
WebSocket's handshake is closed with 1008.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import product
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from forge.bus import NatsServer
from forge.config import load_settings
from forge.services.common.query_params import repeated_names
from forge.services.common.serving import ServiceName, build_service

from ..services.conftest import SECRETS, prod_environ, with_signing_key

pytestmark = pytest.mark.usefixtures("sqlite_only_store")
OPERATOR = {"authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}


@contextmanager
def _serving(which: ServiceName, tmp_path: Path, nats: NatsServer) -> Iterator[TestClient]:
    storage = with_signing_key(tmp_path / "storage")
    settings = load_settings(prod_environ(storage, **nats.client_env()))
    with TestClient(build_service(which, settings), follow_redirects=False,
                    raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(params=list(ServiceName), ids=lambda s: s.value)
def service(request: pytest.FixtureRequest, tmp_path: Path,
            nats: NatsServer) -> Iterator[tuple[ServiceName, TestClient]]:
    with _serving(request.param, tmp_path, nats) as client:
        yield request.param, client


def _refused(resp: httpx.Response, name: str) -> None:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"] == "validation_error"
    assert body["message"] == f"{name}: given more than once"
    assert body["details"] == [{"field": name, "problem": "given more than once"}]


def test_a_repeated_query_parameter_is_refused_by_name(
        service: tuple[ServiceName, TestClient]) -> None:
    name, client = service
    # A repeated parameter the route does not take, in either order, and a blank one.
    for query in ("limit=5000&limit=10", "limit=10&limit=5000", "limit=&limit=10"):
        _refused(client.get(f"/readyz?{query}", headers=OPERATOR), "limit")
    # `check` is the one list of /readyz: it may repeat, and another name beside it may not.
    ok = client.get("/readyz?check=config&check=config", headers=OPERATOR)
    assert ok.status_code in (200, 503) and "config" in ok.text, ok.text
    _refused(client.get("/readyz?check=config&x=1&x=2", headers=OPERATOR), "x")
    if name is ServiceName.orchestrator:
        _refused(client.get("/v1/scenarios?limit=5000&limit=10", headers=OPERATOR), "limit")
        assert client.get("/v1/scenarios?limit=10", headers=OPERATOR).status_code == 200
    if name is ServiceName.scoreboard:
        _refused(client.get("/v1/leaderboard?tenant_id=acme&tenant_id=other",
                            headers=OPERATOR), "tenant_id")
    # A path no route has is still a 404, repeated parameters or not.
    assert client.get("/nowhere?a=1&a=2").status_code == 404


def test_a_page_and_the_terminal_refuse_a_repeated_parameter(tmp_path: Path,
                                                             nats: NatsServer) -> None:
    with _serving(ServiceName.spawn, tmp_path, nats) as client:
        _page_and_terminal(client)


def _page_and_terminal(client: TestClient) -> None:
    page = client.get("/signin?next=/labs&next=//evil.example",
                      headers={"accept": "text/html"})
    assert page.status_code == 422 and "text/html" in page.headers["content-type"]
    assert "evil.example" not in page.text
    assert client.get("/signin?next=/labs", headers={"accept": "text/html"}).status_code == 200
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(
            "/v1/scenarios/scn-0123456789abcdef/terminal?host=a&host=b"):
        pass
    assert closed.value.code == 1008


def test_what_counts_as_repeated() -> None:
    assert repeated_names(b"a=1&b=2") == []
    assert repeated_names(b"a=1&b=2&a=3&b&b") == ["a", "b"]
    assert repeated_names(b"a=1&%61=2") == ["a"]  # an encoded name is the same name
    assert repeated_names(b"") == []


def test_a_query_without_a_separator_skips_the_parse_and_answers_the_same() -> None:
    """Each request's check skips the parse when the query has no "&" (Starlette splits
    pairs at "&" only, so there is at most one name); whatever the query, it names what a
    full parse names: every query of up to four of these pieces."""
    pieces = ["a", "b", "=", "&", ";", "%26", "%61", "+", "1", "&&"]
    for size in range(5):
        for parts in product(pieces, repeat=size):
            query = "".join(parts)
            counts = Counter(name for name, _ in parse_qsl(query, keep_blank_values=True))
            assert repeated_names(query.encode("latin-1")) == [
                name for name, count in counts.items() if count > 1], query
