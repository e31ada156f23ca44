"""Sign-in returns to the page that asked for it (`/signin?next=…`), but never to another
site: `next` must be a path on this site. Before: no `next` at all (the lab page answered a
signed-out browser with API wording). After: only same-origin relative paths are followed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.identity.apikeys import create_api_key
from forge.services.spawn.app import build_app

from ..services.conftest import shipped_spawn_settings

pytestmark = pytest.mark.usefixtures("sqlite_only_store")
ORIGIN = "http://testserver"
HOSTILE = ["https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil.example",
           "javascript:alert(1)", "http:/evil.example", "/%0d%0aLocation:x", "/ok\r\nX: y",
           " /tracks", "tracks", "/" + "a" * 600]


@pytest.fixture
def client(tmp_path: Path, nats: NatsServer) -> Iterator[TestClient]:
    settings = shipped_spawn_settings(tmp_path / "storage", nats)
    with TestClient(build_app(settings), follow_redirects=False) as test_client:
        yield test_client


def test_a_signed_out_page_goes_to_sign_in_and_back(client: TestClient) -> None:
    html = {"accept": "text/html"}
    lab = client.get("/lab/scn-0123456789abcdef", headers=html)
    assert lab.status_code == 303
    assert lab.headers["location"] == "/signin?next=/lab/scn-0123456789abcdef"
    assert client.get("/tracks", headers=html).headers["location"] == "/signin?next=/tracks"
    assert 'name="next" value="/lab/scn-0123456789abcdef"' in client.get(
        "/signin", params={"next": "/lab/scn-0123456789abcdef"}).text
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    key = create_api_key(db, "acme", "alice").plaintext
    back = client.post("/signin", data={"api_key": key, "next": "/lab/scn-0123456789abcdef"},
                       headers={"origin": ORIGIN})
    assert back.status_code == 303 and back.headers["location"] == "/lab/scn-0123456789abcdef"


def test_sign_in_never_redirects_off_site(client: TestClient) -> None:
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    key = create_api_key(db, "acme", "alice").plaintext
    for target in HOSTILE:
        form = client.get("/signin", params={"next": target}).text
        assert 'name="next" value="/tracks"' in form, target
        resp = client.post("/signin", data={"api_key": key, "next": target},
                           headers={"origin": ORIGIN})
        assert resp.status_code == 303 and resp.headers["location"] == "/tracks", target
