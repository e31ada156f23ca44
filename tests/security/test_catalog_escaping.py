"""Catalog text from a template is shown as text, never as markup.

Attack: a template author (or a tampered template file) puts markup in the learner-facing
catalog entry - `<script>` in the title, an `<img onerror>` in the summary or an objective -
hoping the track cards render it for every learner who opens the catalog. The cards escape
every catalog field, and the page's CSP forbids inline script besides. Real spawn_service
app, real nats-server and SQLite, a templates folder with the hostile entry.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import load_settings
from forge.content import content_path
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.services.spawn.app import build_app

from ..services.conftest import prod_environ

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store

ORIGIN = "http://testserver"
TITLE = "<script>alert('title')</script> Find the server"
SUMMARY = "A summary with <img src=x onerror=alert('summary')> in it, long enough to pass."
OBJECTIVE = "<b onmouseover=alert('objective')>hover</b>"


@pytest.fixture
def client(tmp_path: Path, nats: NatsServer) -> Iterator[TestClient]:
    templates = tmp_path / "templates"
    shutil.copytree(content_path("templates"), templates)
    doc = yaml.safe_load((templates / "netplus.yaml").read_text(encoding="utf-8"))
    doc["metadata"].update(title=TITLE, summary=SUMMARY, objectives=[OBJECTIVE])
    (templates / "netplus.yaml").write_text(yaml.safe_dump(doc, sort_keys=False),
                                            encoding="utf-8")
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_TEMPLATE_DIR=str(templates),
                                          ORCHESTRATOR_URL="http://127.0.0.1:9",
                                          SCOREBOARD_URL="http://127.0.0.1:9"))
    with TestClient(build_app(settings), follow_redirects=False) as test_client:
        yield test_client


def test_markup_in_a_catalog_entry_renders_as_text(client: TestClient) -> None:
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    grant(db, "acme", "PRO", "alice")
    key = create_api_key(db, "acme", "alice").plaintext
    assert client.post("/signin", data={"api_key": key},
                       headers={"origin": ORIGIN}).status_code == 303
    page = client.get("/tracks")
    assert page.status_code == 200
    html = page.text
    for hostile in ("<script>alert", "<img src=x", "<b onmouseover"):
        assert hostile not in html
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt; Find the server" in html
    assert "&lt;img src=x onerror=alert(&#39;summary&#39;)&gt;" in html
    assert "&lt;b onmouseover=alert(&#39;objective&#39;)&gt;hover&lt;/b&gt;" in html
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # The API hands the text over as data (JSON), unchanged, for clients to escape in turn.
    api = client.get("/v1/tracks", headers={"x-api-key": key}).json()
    assert api["tracks"][0]["title"] == TITLE and api["tracks"][0]["objectives"] == [OBJECTIVE]
