"""Pages people read: HTML errors for browsers (JSON stays for the API), no internal names or
token jargon anywhere a learner looks, one spawn path for the API and the Start button, and
a "too many labs" refusal that links the running lab and says when a place frees."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.config.keyring import HmacKeyring
from forge.content import content_path
from forge.entitlements.grants import grant
from forge.errors import ForgeError
from forge.identity.apikeys import create_api_key
from forge.services.spawn.app import build_app
from forge.services.spawn.web.errors import human_message
from forge.services.spawn.web.security import csrf_token
from forge.store.models import Scenario
from forge.tokens import ACCESS, RECEIPT, mint_token

from ..services.conftest import prod_environ

ORIGIN = "http://testserver"
HTML = {"accept": "text/html,application/xhtml+xml"}
# What a learner must never read: token formats, internal services, crypto wording.
JARGON = ("jws", "jwt", "acc token", "compact", "orchestrator", "scoreboard", "spawn_service",
          "signature does not verify", "x-receipt-token", "hmac", "jti", "backend")
SCN = "scn-0123456789abcdef"


def build(tmp_path: Path, nats: NatsServer, db_url: str | None = None) -> TestClient:
    extra = {"FORGE_DB_URL": db_url} if db_url else {}
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_TEMPLATE_DIR=str(content_path("templates")),
                                          ORCHESTRATOR_URL="http://127.0.0.1:9",
                                          SCOREBOARD_URL="http://127.0.0.1:9", **extra))
    return TestClient(build_app(settings), follow_redirects=False)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app (real nats-server, SQLite) for the page checks of this module."""
    server = NatsServer()
    server.start()
    try:
        with build(tmp_path_factory.mktemp("pages"), server) as test_client:
            yield test_client
    finally:
        server.close()


@pytest.fixture
def client(shared: TestClient, sqlite_only_store: str) -> TestClient:
    """The shared app as a fresh browser (no cookies)."""
    shared.cookies.clear()
    return shared


def settings_of(client: TestClient) -> Settings:
    return client.app.state.spawn.settings  # type: ignore[attr-defined,no-any-return]


def key_for(client: TestClient, subject: str, plan: str | None = "PRO") -> str:
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    if plan is not None:
        grant(db, "acme", plan, subject)
    return create_api_key(db, "acme", subject).plaintext


def sign_in(client: TestClient, key: str) -> str:
    assert client.post("/signin", data={"api_key": key},
                       headers={"origin": ORIGIN}).status_code == 303
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/plans").text)
    assert found is not None
    return found.group(1)


def text_of(page: str) -> str:
    """What a person reads: the page without tags, unescaped, lower-case."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page)).lower()


def jargon_in(page: str) -> list[str]:
    return [word for word in JARGON if word in text_of(page)]


def test_browsers_get_pages_and_the_api_keeps_json(client: TestClient) -> None:
    missing = client.get("/no/such/page", headers=HTML)
    assert missing.status_code == 404 and "Page not found" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert client.get("/no/such/page").json()["error"] == "not_found"
    api = client.get(f"/v1/scenarios/{SCN}", headers=HTML)
    assert api.status_code == 401 and api.json()["error"] == "credentials_required"

    settings = settings_of(client)
    bad_links = {
        "garbage": "abc",
        "forged": mint_token(HmacKeyring("SAT_HMAC_SECRET", current=b"f" * 40), ACCESS,
                             {"scenario_id": SCN, "sub": "alice", "tenant_id": "acme"}),
        "expired": mint_token(settings.sat, ACCESS, {"scenario_id": SCN, "sub": "alice",
                                                     "tenant_id": "acme"}, ttl_s=-3600),
    }
    for name, token in bad_links.items():
        page = client.get(f"/v1/access/{SCN}", params={"token": token}, headers=HTML)
        assert page.status_code == 401, name
        assert "This lab link cannot be used" in page.text, name
        assert f'href="/signin?next=/lab/{SCN}"' in page.text and "Sign in instead" in page.text
        assert jargon_in(page.text) == [], (name, jargon_in(page.text))
        assert client.get(f"/v1/access/{SCN}", params={"token": token}).json()["error"]
    # A link cut off before its token (a mail client's wrapping): a page too, no JSON.
    cut = client.get(f"/v1/access/{SCN}", headers=HTML)
    assert cut.status_code == 422 and "This lab link cannot be used" in cut.text, cut.text
    assert client.get(f"/v1/access/{SCN}").json()["error"] == "validation_error"


def test_no_learner_page_or_error_speaks_jargon(client: TestClient) -> None:
    seen: dict[str, str] = {}
    seen["signin"] = client.get("/signin").text
    seen["plans"] = client.get("/plans").text
    seen["no checkout"] = client.get("/checkout").text  # Back after paying, or a stale tab
    assert "No payment in progress" in seen["no checkout"]
    seen["404"] = client.get("/nope", headers=HTML).text
    forged = mint_token(HmacKeyring("RECEIPT_HMAC_SECRET", current=b"r" * 40), RECEIPT, {
        "tenant_id": "acme", "sub": "alice", "sub_proof": "new", "plan": "PRO",
        "retention_days": 30, "charge_id": "ch_x"})
    seen["bad receipt"] = client.post("/signin", data={"receipt": forged},
                                      headers={"origin": ORIGIN}).text
    seen["bad key"] = client.post("/signin", data={"api_key": "fgk_nope"},
                                  headers={"origin": ORIGIN}).text
    csrf = sign_in(client, key_for(client, "nobody", plan=None))
    no_plan = client.get("/tracks")
    assert no_plan.status_code == 403 and 'href="/plans"' in no_plan.text
    seen["no plan"] = no_plan.text
    seen["other's lab"] = client.get(f"/lab/{SCN}", headers=HTML).text
    seen["unknown track"] = client.post("/spawn", data={"csrf": csrf, "track": "nope"},
                                        headers={"origin": ORIGIN}).text
    seen["checkout off"] = client.post("/checkout", data={"csrf": csrf, "plan": "PRO"},
                                       headers={"origin": ORIGIN}).text
    assert "not set up" in seen["checkout off"]
    for unreachable in ("backend_unreachable", "lab_node_unreachable"):
        words = human_message(ForgeError(unreachable, 502, "orchestrator: unreachable (X)"))
        assert not any(word in words.lower() for word in JARGON)
    refused = human_message(ForgeError("too_early", 409, "orchestrator: token jti compact"))
    assert not any(word in refused.lower() for word in JARGON)
    found = {name: jargon_in(page) for name, page in seen.items() if jargon_in(page)}
    assert found == {}


BAD_SPAWNS = [
    {"track": "nope"},
    {"track": ""},
    {"track": "x" * 40},
    {"track": "netplus", "lab": "../netplus"},
    {"track": "netplus", "lab": "no-such-lab"},
    {"track": "netplus", "request_id": "short"},
    {"track": "cissp"},  # not in PRO
]


def test_the_api_and_the_start_button_refuse_alike(client: TestClient) -> None:
    key = key_for(client, "alex")
    csrf = sign_in(client, key)
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    for body in BAD_SPAWNS:
        api = client.post("/v1/spawn", json={k: v for k, v in body.items() if v is not None},
                          headers={"x-api-key": key})
        web = client.post("/spawn", data={"csrf": csrf, **body}, headers={"origin": ORIGIN})
        err = api.json()
        assert web.status_code == api.status_code, (body, web.status_code, err)
        words = human_message(ForgeError(err["error"], api.status_code, err["message"],
                                         err["details"]))
        assert html.escape(words, quote=False) in web.text, (body, words)
        if err["error"] == "track_not_in_plan":
            assert 'href="/plans"' in web.text  # a plan that includes it is one click away
    with db.read() as sess:
        assert sess.scalar(select(func.count()).select_from(Scenario)) == 0


def test_too_many_labs_links_the_running_lab_and_says_when_a_place_frees(
        tmp_path: Path, nats: NatsServer, db_url: str) -> None:
    with build(tmp_path, nats, db_url) as client:
        key = key_for(client, "alice", "FREE")  # one lab at a time
        first = client.post("/v1/spawn", json={"track": "netplus"}, headers={"x-api-key": key})
        assert first.status_code == 201
        running = first.json()["scenario_id"]
        db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
        with db.session() as sess:  # the lab runs and ends in five minutes
            row = sess.get(Scenario, running)
            assert row is not None
            row.state, row.expires_at = "running", datetime.now(UTC) + timedelta(minutes=5)
        second = client.post("/v1/spawn", json={"track": "netplus"}, headers={"x-api-key": key})
        assert second.status_code == 429
        retry = int(second.headers["retry-after"])
        assert 1 <= retry <= 300 and retry != 30
        detail = second.json()["details"][0]
        assert detail["running_lab"] == f"/lab/{running}" and detail["scenario_id"] == running
        assert f"/lab/{running}" in second.json()["message"]

        csrf = sign_in(client, key)
        page = client.post("/spawn", data={"csrf": csrf, "track": "netplus"},
                           headers={"origin": ORIGIN})
        assert page.status_code == 429 and 1 <= int(page.headers["retry-after"]) <= 300
        assert f'href="/lab/{running}"' in page.text and "Go to your running lab" in page.text
        assert "1 lab at once" in page.text and jargon_in(page.text) == []


@pytest.mark.parametrize("minutes", ["\u00b2", "\u0661\u0665", "0", "61", "fifteen"])
def test_the_extend_form_refuses_what_is_not_a_minute_count(client: TestClient,
                                                            minutes: str) -> None:
    """`'\u00b2'.isdigit()` (superscript two) is true but int() of it fails: the form
    answered 500 and dropped the connection. Every value that is not 1-60 in ASCII digits
    (Arabic-Indic digits included) gets the same 400 page."""
    key = key_for(client, "mia-" + minutes.encode().hex())
    started = client.post("/v1/spawn", json={"track": "netplus"}, headers={"x-api-key": key})
    assert started.status_code == 201, started.text
    csrf = sign_in(client, key)
    resp = client.post(f"/lab/{started.json()['scenario_id']}/extend",
                       data={"csrf": csrf, "minutes": minutes}, headers={"origin": ORIGIN})
    assert resp.status_code == 400, resp.text
    assert "a whole number from 1 to 60" in resp.text


def test_a_task_only_submit_may_check_offers_no_check_button(client: TestClient) -> None:
    """netplus's save-page check connects out from the learner's host, where a learner
    process could watch where it connects (the answer): its task says it is checked when
    you submit, and offers no "Check this task" (the node refuses it too)."""
    key = key_for(client, "noa")
    started = client.post("/v1/spawn", json={"track": "netplus"}, headers={"x-api-key": key})
    assert started.status_code == 201, started.text
    sid = started.json()["scenario_id"]
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    with db.session() as sess:  # the lab runs (the tasks show on a running lab)
        row = sess.get(Scenario, sid)
        assert row is not None
        row.state, row.expires_at = "running", datetime.now(UTC) + timedelta(minutes=30)
    sign_in(client, key)
    page = client.get(f"/lab/{sid}", headers=HTML).text
    items = {m.group(1): m.group(2) for m in re.finditer(
        r'<li class="task-item" id="task-([a-z0-9-]+)">(.*?)</li>', page, re.S)}
    assert set(items) == {"find-server", "save-page", "inventory-serial"}
    assert "Check this task" not in items["save-page"]
    assert "Checked when you submit." in items["save-page"]
    assert "Check this task" in items["find-server"]


def test_the_no_script_confirmations_keep_saying_who_is_signed_in(client: TestClient) -> None:
    """Without script, Submit and a hint that costs score ask on a page of their own. Those
    pages' header offered "Sign in" (and "Plans" twice) to the learner signed in a moment
    before: one about to submit read that they had been signed out."""
    key = key_for(client, "nojs")
    sid = client.post("/v1/spawn", json={"track": "netplus"},
                      headers={"x-api-key": key}).json()["scenario_id"]
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    with db.session() as sess:  # the lab runs (Submit and hints are for a running lab)
        row = sess.get(Scenario, sid)
        assert row is not None
        row.state, row.expires_at = "running", datetime.now(UTC) + timedelta(minutes=30)
    csrf = sign_in(client, key)
    form = {"csrf": csrf}
    assert client.post(f"/lab/{sid}/hints/h1", data=form, headers={"origin": ORIGIN,
                       **HTML}).status_code == 303  # free: revealed at once
    pages = {"submit": client.post(f"/lab/{sid}/submit", data=form,
                                   headers={"origin": ORIGIN, **HTML}),
             "paid hint": client.post(f"/lab/{sid}/hints/h2", data=form,
                                      headers={"origin": ORIGIN, **HTML})}
    assert "Submit this lab?" in pages["submit"].text
    assert "Reveal hint 2?" in pages["paid hint"].text
    for name, shown in pages.items():
        assert shown.status_code == 200, name
        header = shown.text[shown.text.index("<header"):shown.text.index("</header>")]
        assert "Signed in as <strong>nojs</strong>" in header, name
        assert 'href="/signin"' not in header and header.count('href="/plans"') == 1, name


def test_a_check_the_lab_node_did_not_answer_is_said_without_jargon(
        client: TestClient) -> None:
    """"Check this task" while the lab's node does not answer (here: none runs) showed
    "orchestrator: unreachable (ConnectError)" under the task, and without script an
    "Error 502" page saying the same with "Sign in" in its header."""
    key = key_for(client, "checker")
    sid = client.post("/v1/spawn", json={"track": "netplus"},
                      headers={"x-api-key": key}).json()["scenario_id"]
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    with db.session() as sess:  # the lab runs (tasks are checked on a running lab)
        row = sess.get(Scenario, sid)
        assert row is not None
        row.state, row.expires_at = "running", datetime.now(UTC) + timedelta(minutes=30)
    csrf = sign_in(client, key)
    for accept in ("application/json", "text/html"):
        answer = client.post(f"/lab/{sid}/checks/find-server", data={"csrf": csrf},
                             headers={"origin": ORIGIN, "accept": accept})
        assert answer.status_code == 502, accept
        said = answer.json()["message"] if accept == "application/json" else answer.text
        assert "did not answer. Try again in a minute." in said, accept
        assert not jargon_in(said) and "connecterror" not in said.lower(), (accept, said)
        if accept == "text/html":
            assert "Signed in as <strong>checker</strong>" in said
            assert f'href="/lab/{sid}"' in said  # back to the lab


def test_a_lab_link_that_leads_nowhere_says_so_in_the_pages_words(client: TestClient) -> None:
    """A lab link cut short in an email, mistyped, or another account's: the page said
    "scenario not found" or "scenario_id: expected scn-<16 lowercase hex digits>", words
    of the store that the pages never use (they say "lab"), with no way on."""
    csrf = sign_in(client, key_for(client, "owner"))
    mine = client.post("/spawn", data={"csrf": csrf, "track": "netplus"},
                       headers={"origin": ORIGIN}).headers["location"]
    client.cookies.clear()
    sign_in(client, key_for(client, "stranger"))
    for path in (mine, mine + "/result", f"/lab/{SCN}", f"/lab/{SCN}/result"):
        gone = client.get(path, headers=HTML)
        assert gone.status_code == 404, path
        assert "There is no lab of yours at this address" in gone.text, path
        assert "Labs page" in gone.text and 'href="/tracks"' in gone.text, path
        assert "scenario" not in text_of(gone.text), path
    # A lab form's address opened as a page (the no-script Submit, check and hint answers are
    # shown there; a bookmark, the history or another tab opens it again): its lab's page,
    # where "Something went wrong ... Try again" said what could never work.
    for form in ("/submit", "/checks/find-server", "/hints/h1", "/extend"):
        opened = client.get(mine + form, headers=HTML, follow_redirects=False)
        assert (opened.status_code, opened.headers["location"]) == (303, mine), form
    opened = client.get("/signout", headers=HTML, follow_redirects=False)
    assert (opened.status_code, opened.headers["location"]) == (303, "/")
    assert client.get(mine + "/submit").status_code == 405  # programs keep the JSON refusal
    for path in ("/lab/xyz", "/lab/scn-0123/result", "/lab/SCN-0123456789ABCDEF"):
        bad = client.get(path, headers=HTML)
        assert bad.status_code == 422, path
        assert "This is not a lab&#39;s address" in bad.text, path
        assert "scenario" not in text_of(bad.text), path
    # Programs keep the precise JSON.
    api = client.get(f"/v1/scenarios/{SCN}", headers={"x-api-key": key_for(client, "api")})
    assert api.status_code == 404 and api.json()["message"] == "scenario not found"


def test_a_learner_signed_out_mid_lab_is_told_so_and_led_back_to_the_lab(
        client: TestClient) -> None:
    """The session cookie runs out while the lab page is open (the terminal still works).
    Before, Check, Reveal and Submit all answered "csrf: the form is missing its token;
    reload the page", and Submit's page linked nowhere but back (probe BJ). Now each says
    the learner is signed out, that the lab keeps running, and links the sign-in page that
    leads back to the lab."""
    back = f"/signin?next=/lab/{SCN}"
    for action in (f"/lab/{SCN}/checks/find-server", f"/lab/{SCN}/hints/h1"):
        answer = client.post(action, data={"csrf": "left-over"},
                             headers={"origin": ORIGIN, "accept": "application/json"})
        assert answer.status_code == 401, action
        assert answer.json() == {"error": "signed_out", "signin": back, "message": (
            "You are signed out: your session ended. Sign in again to go on; your labs "
            "keep running.")}
    for action in (f"/lab/{SCN}/submit", f"/lab/{SCN}/checks/find-server"):  # no script
        page = client.post(action, data={"csrf": "left-over", "confirm": "yes"},
                           headers={"origin": ORIGIN, **HTML})
        assert page.status_code == 401, action
        assert "you are signed out" in text_of(page.text)
        assert f'href="{back}"' in page.text and not jargon_in(page.text)
        assert "csrf" not in text_of(page.text)
    # The cookie is still sent but no longer a session (it ran out): the page's own token
    # for it passes, the session does not, and the script is told the same in plain words.
    client.cookies.set("forge_session", "ran-out")
    answer = client.post(f"/lab/{SCN}/checks/find-server",
                         data={"csrf": csrf_token(settings_of(client), "ran-out")},
                         headers={"origin": ORIGIN, "accept": "application/json"})
    assert answer.status_code == 401 and answer.json()["signin"] == back
    assert answer.json()["message"].startswith("You are not signed in, or your session ended.")
    client.cookies.clear()
    # A form of another page (no lab to go back to) leads to the learner's labs.
    start = client.post("/spawn", data={"track": "netplus", "csrf": "left-over"},
                        headers={"origin": ORIGIN, **HTML})
    assert start.status_code == 401 and 'href="/signin?next=/tracks"' in start.text


def test_a_stale_form_says_to_reload_without_jargon(client: TestClient) -> None:
    """Signed in, but the form's token is not this session's (a page opened before the last
    sign-in): 403, in words a learner understands."""
    sign_in(client, key_for(client, "stale"))
    for token in ("", "not-this-sessions-token"):
        page = client.post("/spawn", data={"track": "netplus", "csrf": token},
                           headers={"origin": ORIGIN, **HTML})
        assert page.status_code == 403
        assert "reload the page and try again" in text_of(page.text)
        assert "csrf" not in text_of(page.text) and not jargon_in(page.text)


def test_a_hint_or_check_refused_for_its_order_or_the_labs_state_is_said_plainly() -> None:
    """DS: a hint opened out of order read "hint: reveal hint 1 first (…)" (the field's name
    before the words), and one refused for the lab's state "scenario is completed; hints can
    be revealed only while the lab runs" (the store's word for a lab)."""
    order = human_message(ForgeError("hint_out_of_order", 409, "hint: reveal hint 1 first "
                                     "(hints for a task open in order)"))
    assert order == "Reveal hint 1 first (hints for a task open in order)."
    for said in ("scenario is completed; hints can be revealed only while the lab runs",
                 "scenario is launching; a task can be checked only while the lab runs"):
        words = human_message(ForgeError("not_running", 409, said))
        assert "scenario" not in words and "not running" in words
