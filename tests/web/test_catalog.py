"""The catalog learners choose from: GET /v1/tracks and the track cards show each lab's title,
summary, difficulty, minutes and objectives (not internal labels), and a lab with several
learner hosts gets one keyboard-reachable terminal tab per host. Real spawn_service app,
real nats-server and SQLite, the shipped templates."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.services.spawn.app import build_app
from forge.services.spawn.spawning import REQUEST_ID
from forge.store.models import Scenario

from ..services.conftest import prod_environ
from ..support.lab_catalog import lab_catalog_dir
from .test_pages import ORIGIN, app_client, csrf_of, sign_in  # noqa: F401 - the app fixture

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


def test_tracks_api_exposes_the_catalog_of_the_callers_plan(
        app_client: tuple[TestClient, Settings]) -> None:  # noqa: F811
    client, _ = app_client
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    grant(db, "acme", "PRO", "alice")
    key = create_api_key(db, "acme", "alice").plaintext
    assert client.get("/v1/tracks").status_code == 401
    resp = client.get("/v1/tracks", headers={"x-api-key": key})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["plan"] == "PRO"
    by_track = {t["track"]: t for t in body["tracks"]}
    assert list(by_track) == ["netplus", "ccna"]  # PRO's tracks, in its order; no cissp
    ccna = by_track["ccna"]
    assert ccna["template"] == "ccna" and ccna["title"] == "Static routing between two LANs"
    assert ccna["difficulty"] == "intermediate" and ccna["estimated_minutes"] == 45
    assert "R1 and R2" in ccna["summary"] and len(ccna["objectives"]) == 5
    assert ccna["terminal_hosts"] == ["learner", "r2"]
    assert by_track["netplus"]["difficulty"] == "beginner"
    assert by_track["netplus"]["terminal_hosts"] == ["learner"]
    # The OpenAPI document describes it (clients are generated from it).
    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/v1/tracks"]["get"]
    assert set(op["responses"]) >= {"200", "401", "403"}
    entry = schema["components"]["schemas"]["CatalogEntry"]
    assert set(entry["required"]) >= {"title", "summary", "difficulty", "estimated_minutes",
                                      "objectives", "terminal_hosts"}


def cards_of(page: str) -> dict[str, tuple[bool, str]]:
    """lab name -> (locked, the card's HTML) for every card on the tracks page, in order."""
    cards = re.findall(r'<li class="card( locked)?" aria-labelledby="lab-([a-z0-9-]+)">(.*?)'
                       r'</li>\s*(?=<li class="card|</ul>\s*</section>)', page, re.S)
    return {name: (bool(locked), body) for locked, name, body in cards}


def test_track_cards_show_catalog_data_not_internal_labels(
        app_client: tuple[TestClient, Settings]) -> None:  # noqa: F811
    client, settings = app_client
    sign_in(client, settings)
    page = client.get("/tracks").text
    cards = cards_of(page)  # other shipped labs may be there too: these two by name
    (netplus_locked, netplus), (ccna_locked, ccna) = cards["netplus"], cards["ccna"]
    assert not netplus_locked and not ccna_locked and cards["cissp"][0]  # PRO lacks cissp
    assert "<h3" in netplus and "Find the server</h3>" in netplus
    assert "beginner" in netplus and "about 30 min" in netplus
    assert "nobody wrote down where the intranet" in netplus
    assert "<li>Download a web page and save it byte for byte</li>" in netplus
    assert "Static routing between two LANs</h3>" in ccna and "intermediate" in ccna
    assert "about 45 min" in ccna and ccna.count("<li>") == 5
    for internal in ("class:", "tier:", "owner:", "Template "):
        assert internal not in page


def test_a_lab_with_two_learner_hosts_has_a_terminal_tab_each(
        app_client: tuple[TestClient, Settings]) -> None:  # noqa: F811
    client, settings = app_client
    sign_in(client, settings)
    token = csrf_of(client.get("/tracks").text)
    created = client.post("/spawn", data={"track": "ccna", "csrf": token},
                          headers={"origin": ORIGIN})
    path = created.headers["location"]
    sid = path.rsplit("/", 1)[1]
    # The orchestrator is not part of this test: record the lab as running, as it would.
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    with db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None
        row.state = "running"
        row.expires_at = datetime.now(UTC) + timedelta(minutes=30)
        row.details = {**row.details, "hosts": {
            "learner": {"lan-a": "10.62.1.1", "transit": "10.62.0.1"},
            "r2": {"transit": "10.62.0.6", "lan-b": "10.62.2.1"},
            "pc-a": {"lan-a": "10.62.1.10"}, "pc-b": {"lan-b": "10.62.2.10"}}}
    page = client.get(path).text
    tabs = re.findall(r'<button type="button" role="tab"[^>]*>[^<]*</button>', page)
    assert len(tabs) == 2
    assert 'aria-selected="true"' in tabs[0] and 'tabindex="0"' in tabs[0] and \
        '>learner</button>' in tabs[0]
    assert 'aria-selected="false"' in tabs[1] and 'tabindex="-1"' in tabs[1] and \
        'aria-controls="term-panel-r2"' in tabs[1] and '>r2</button>' in tabs[1]
    assert 'role="tablist"' in page and page.count('role="tabpanel"') == 2
    assert 'aria-label="Terminal on host r2"' in page
    # The learner sees both routers' addresses, not the PCs' (finding them is the task).
    assert "<code>10.62.0.6</code>" in page and "<code>10.62.2.10</code>" not in page
    api = client.get(f"/v1/scenarios/{sid}").json()
    assert api["terminal_hosts"] == ["learner", "r2"] and set(api["hosts"]) == {"learner", "r2"}
    assert api["other_hosts"] == 2


@pytest.fixture
def lab_catalog_client(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[TestClient, Settings]]:
    """The real app over several labs per track (tests/support/lab_catalog.py)."""
    templates = lab_catalog_dir(tmp_path / "templates")
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_TEMPLATE_DIR=str(templates),
                                          ORCHESTRATOR_URL="http://127.0.0.1:9",
                                          SCOREBOARD_URL="http://127.0.0.1:9"))
    with TestClient(build_app(settings), follow_redirects=False) as client:
        yield client, settings


def test_track_page_has_a_card_and_start_button_per_lab(
        lab_catalog_client: tuple[TestClient, Settings]) -> None:
    client, settings = lab_catalog_client
    sign_in(client, settings)  # PRO: netplus and ccna, foundation and intermediate tiers
    page = client.get("/tracks").text
    headings = re.findall(r'<h2 id="track-([a-z]+)">([^<]*)', page)
    assert [h[0] for h in headings] == ["netplus", "ccna", "cissp"]
    labs = cards_of(page)
    assert list(labs) == ["basic-netplus", "netplus", "netplus-advanced", "ccna", "ccna-b",
                          "cissp"]
    token = csrf_of(page)
    request_ids = set()
    for name, (locked, body) in labs.items():
        fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">',
                                 body))
        if locked:  # a lab the plan lacks: no Start button, the plans that include it
            assert fields == {} and "<button" not in body
            assert ("Locked: available on the TEAM, ENTERPRISE plans "
                    "(<a href=\"/plans\">see the plans</a>).") in body
            continue
        assert set(fields) == {"csrf", "track", "lab", "request_id"}
        assert fields["lab"] == name and fields["csrf"] == token
        assert fields["track"] == ("ccna" if name.startswith("ccna") else "netplus")
        # The button names the card's lab by its title, never by an internal name.
        title = re.search(r"<h3 [^>]*>([^<]+)</h3>", body)
        assert title is not None
        assert (f'<button type="submit" aria-label="Start this lab: {title.group(1)}">'
                "Start this lab</button>") in body
        assert REQUEST_ID.match(fields["request_id"])  # what POST /spawn accepts
        request_ids.add(fields["request_id"])
    assert len(request_ids) == 4  # one idempotency key per button
    assert "Static routing, second edition</h3>" in labs["ccna-b"][1]
    # Posting a card's form starts that lab.
    form = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', labs["ccna-b"][1]))
    started = client.post("/spawn", data=form, headers={"origin": ORIGIN})
    assert started.status_code == 303, started.text
    sid = started.headers["location"].rsplit("/", 1)[1]
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    with db.read() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None and row.template_id == "ccna-b"
    # A lab that is not the track's is refused with the field named, nothing started.
    wrong = client.post("/spawn", data={**form, "track": "netplus",
                                        "request_id": "web-wrong-track-1"},
                        headers={"origin": ORIGIN})
    assert wrong.status_code == 400 and "lab: not a lab of track netplus" in wrong.text
