"""The web UI's safety rules on the real spawn_service app (real nats-server, real SQLite):
sign-in, CSRF and same-origin checks, CSP, escaping, ownership, operator sessions."""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from forge.bus import NatsServer
from forge.classroom.cohort_invites import make_invite
from forge.classroom.cohorts import Manager, create_cohort
from forge.config import Settings, load_settings
from forge.content import content_path
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role
from forge.services.spawn.app import build_app
from forge.services.spawn.web.render import STATIC_DIR, WEB_PACKAGE, error_page, render_markdown
from forge.store.db import Database
from forge.store.models import Scenario
from forge.tokens import RECEIPT, SESSION, mint_token

from ..services.conftest import SECRETS, prod_environ

ORIGIN = "http://testserver"
SCN = re.compile(r"^/lab/(scn-[0-9a-f]{16})$")


@pytest.fixture
def app_client(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[TestClient, Settings]]:
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_TEMPLATE_DIR=str(content_path("templates")),
                                          ORCHESTRATOR_URL="http://127.0.0.1:9",
                                          SCOREBOARD_URL="http://127.0.0.1:9"))
    with TestClient(build_app(settings), follow_redirects=False) as client:
        yield client, settings


def sign_in(client: TestClient, settings: Settings, tenant: str = "acme",
            subject: str = "alice") -> None:
    app = client.app
    db = app.state.spawn.ctx.db  # type: ignore[attr-defined]
    grant(db, tenant, "PRO", subject)
    key = create_api_key(db, tenant, subject).plaintext
    resp = client.post("/signin", data={"api_key": key}, headers={"origin": ORIGIN})
    assert resp.status_code == 303 and resp.headers["location"] == "/tracks"


def started_lab(client: TestClient, settings: Settings) -> tuple[str, str, str, Database]:
    """Sign in and start netplus: the CSRF token, the lab's path, its id and the database."""
    sign_in(client, settings)
    token = csrf_of(client.get("/tracks").text)
    path = client.post("/spawn", data={"track": "netplus", "csrf": token},
                       headers={"origin": ORIGIN}).headers["location"]
    db: Database = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    return token, path, path.rsplit("/", 1)[1], db


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "page has no CSRF field"
    return found.group(1)


@pytest.mark.usefixtures("sqlite_only_store")
def test_pages_carry_a_strict_csp_and_no_inline_script(
        app_client: tuple[TestClient, Settings]) -> None:
    client, settings = app_client
    signin = client.get("/signin")
    csp = signin.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    sign_in(client, settings)
    tracks = client.get("/tracks")
    for html in (signin.text, tracks.text):
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
        assert re.search(r"\son[a-z]+=", html) is None
    assert tracks.headers["cache-control"] == "no-store"


@pytest.mark.usefixtures("sqlite_only_store")
def test_sign_in_sets_strict_http_only_cookie_and_refuses_bad_keys(
        app_client: tuple[TestClient, Settings]) -> None:
    client, _settings = app_client
    # Said on the form again, beside the field (review CC: another page, the form gone,
    # and "api_key or receipt" for an empty one).
    bad = client.post("/signin", data={"api_key": "fgk_nope", "next": "/lab/x"},
                      headers={"origin": ORIGIN})
    assert bad.status_code == 401 and "That sign-in key is not known" in bad.text
    assert '<p id="signin-error" class="card error" role="alert">' in bad.text
    assert re.search(r'id="api_key"[^>]*aria-invalid="true" aria-describedby="signin-error"',
                     bad.text)
    assert "fgk_nope" not in bad.text  # a key is never written back into the page
    empty = client.post("/signin", data={}, headers={"origin": ORIGIN})
    assert empty.status_code == 400 and "Enter your sign-in key, or paste a receipt" in empty.text
    assert "api_key or receipt" not in empty.text and 'id="api_key"' in empty.text
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    key = create_api_key(db, "acme", "bob").plaintext
    resp = client.post("/signin", data={"api_key": key}, headers={"origin": ORIGIN})
    cookie = resp.headers["set-cookie"].lower()
    assert "forge_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie


@pytest.mark.usefixtures("sqlite_only_store")
def test_form_posts_from_another_site_or_without_token_are_refused(
        app_client: tuple[TestClient, Settings]) -> None:
    client, settings = app_client
    for headers in ({}, {"origin": "http://evil.example"}, {"origin": "null"}):
        resp = client.post("/signin", data={"api_key": "x"}, headers=headers)
        assert resp.status_code == 403 and "must come from this site" in resp.text
    sign_in(client, settings)
    token = csrf_of(client.get("/tracks").text)
    missing = client.post("/spawn", data={"track": "netplus"}, headers={"origin": ORIGIN})
    assert missing.status_code == 403 and "Reload the page and try again" in missing.text
    forged = client.post("/spawn", data={"track": "netplus", "csrf": token[:-2] + ("yy" if token.endswith("xx") else "xx")},
                         headers={"origin": ORIGIN})
    assert forged.status_code == 403
    for odd in ("\u00e9" * len(token), token[:-1] + "\u00e9"):  # non-ASCII: 403, not 500
        resp = client.post("/spawn", data={"track": "netplus", "csrf": odd},
                           headers={"origin": ORIGIN})
        assert resp.status_code == 403 and "Reload the page and try again" in resp.text
    raw = client.post("/spawn", content=b"track=netplus&csrf=%ff%fe",
                      headers={"origin": ORIGIN,
                               "content-type": "application/x-www-form-urlencoded"})
    assert raw.status_code in (400, 403), raw.status_code
    cross = client.post("/spawn", data={"track": "netplus", "csrf": token},
                        headers={"origin": "http://evil.example"})
    assert cross.status_code == 403
    ok = client.post("/spawn", data={"track": "netplus", "csrf": token,
                                     "request_id": "web-test-0001"},
                     headers={"origin": ORIGIN})
    assert ok.status_code == 303 and SCN.match(ok.headers["location"])
    assert "token" not in ok.headers["location"]


@pytest.mark.usefixtures("sqlite_only_store")
def test_track_list_follows_the_plan_and_spawn_refuses_other_tracks(
        app_client: tuple[TestClient, Settings]) -> None:
    client, settings = app_client
    sign_in(client, settings)
    page = client.get("/tracks").text
    assert "Start this lab: Find the server" in page  # netplus
    assert "Start this lab: Static routing between two LANs" in page  # ccna
    # PRO does not include cissp: its card has no Start button, and a link to the plans
    assert "Start this lab: From evidence to a risk register" not in page
    assert '(<a href="/plans">see the plans</a>)' in page
    token = csrf_of(page)
    resp = client.post("/spawn", data={"track": "cissp", "csrf": token},
                       headers={"origin": ORIGIN})
    assert resp.status_code == 403 and "plan PRO allows netplus, ccna" in resp.text
    unknown = client.post("/spawn", data={"track": "<b>x</b>", "csrf": token},
                          headers={"origin": ORIGIN})
    assert unknown.status_code == 400 and "track: unknown track" in unknown.text


@pytest.mark.usefixtures("sqlite_only_store")
def test_receipt_sign_in_uses_the_receipts_plan(
        app_client: tuple[TestClient, Settings]) -> None:
    client, settings = app_client
    receipt = mint_token(settings.receipt, RECEIPT, {
        "tenant_id": "globex", "sub": "carol", "plan": "ENTERPRISE", "retention_days": 30,
        "charge_id": "ch_test", "sub_proof": "operator"})  # as `forge receipt mint` makes it
    resp = client.post("/signin", data={"receipt": receipt}, headers={"origin": ORIGIN})
    assert resp.status_code == 303
    page = client.get("/tracks").text
    assert "plan ENTERPRISE" in page and "Start this lab: From evidence to a risk register" in page
    anonymous = mint_token(settings.receipt, RECEIPT, {
        "tenant_id": "globex", "plan": "PRO", "retention_days": 30, "charge_id": "ch_x"})
    no_sub = client.post("/signin", data={"receipt": anonymous}, headers={"origin": ORIGIN})
    assert no_sub.status_code == 400
    assert "This receipt names no learner; sign in with an API key" in no_sub.text
    assert re.search(r'id="receipt"[^>]*aria-invalid="true"', no_sub.text)
    garbage = client.post("/signin", data={"receipt": "abc"}, headers={"origin": ORIGIN})
    assert garbage.status_code == 401
    assert garbage.text.count("This receipt cannot be used") == 1


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_receipt_wrapped_over_lines_still_signs_in(
        app_client: tuple[TestClient, Settings]) -> None:
    """A receipt pasted from a mail or a terminal that wrapped it: the textarea posts its
    line breaks (CRLF, as a browser sends them), and it was refused as "changed"."""
    client, settings = app_client
    receipt = mint_token(settings.receipt, RECEIPT, {
        "tenant_id": "globex", "sub": "carol", "plan": "ENTERPRISE", "retention_days": 30,
        "charge_id": "ch_test", "sub_proof": "operator"})
    wrapped = "\r\n".join(receipt[i:i + 64] for i in range(0, len(receipt), 64))
    resp = client.post("/signin", data={"receipt": f"  {wrapped}\r\n"},
                       headers={"origin": ORIGIN})
    assert resp.status_code == 303, resp.text
    assert "plan ENTERPRISE" in client.get("/tracks").text
    # the receipt kept for "Continue with your purchase" is the receipt itself, unwrapped
    assert client.cookies.get("forge_receipt") == receipt


@pytest.mark.usefixtures("sqlite_only_store")
def test_checkout_says_a_new_plan_replaces_the_one_the_learner_has(
        tmp_path: Path, nats: NatsServer) -> None:
    """A TEAM learner who chose Free read "The plan is added to your account." and paid:
    the checkout's grant replaced TEAM, and they were on FREE."""
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_ENV="dev", BILLING_MODE="stub",
                                          FORGE_TEMPLATE_DIR=str(content_path("templates")),
                                          ORCHESTRATOR_URL="http://127.0.0.1:9",
                                          SCOREBOARD_URL="http://127.0.0.1:9"))
    with TestClient(build_app(settings), follow_redirects=False) as client:
        sign_in(client, settings)  # alice, on PRO
        csrf = csrf_of(client.get("/plans").text)

        def pay_page(plan: str) -> str:
            chosen = client.post("/checkout", data={"plan": plan, "csrf": csrf},
                                 headers={"origin": ORIGIN})
            assert chosen.status_code == 303
            return client.get("/checkout").text

        assert "You have the Pro plan already: after this payment it runs 30 days from today." \
            in pay_page("PRO")
        lower = pay_page("FREE")
        assert "It replaces your Pro plan: afterwards your account has the Free plan only, for 30 days." \
            in lower and "added to your account" not in lower
        checkout = re.search(r'name="checkout" value="([^"]+)"', lower)
        assert checkout is not None
        paid = client.post("/checkout/complete", data={"checkout": checkout.group(1)},
                           headers={"origin": ORIGIN})
        assert paid.status_code == 303
        assert "plan FREE" in client.get("/tracks").text  # as the page said: PRO is gone


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_invite_link_opened_with_an_account_of_another_organisation_says_what_to_do(
        app_client: tuple[TestClient, Settings]) -> None:
    """A newcomer opened a class's invite link, took "New here? Choose a plan" on the sign-in
    page, paid, and the link then said "invite: this invite link is not valid (unknown,
    expired or revoked)": a valid link, but their new account is an organisation of its own.
    The page now says so, and leads to signing in with the organisation's account."""
    client, settings = app_client
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    teacher = Manager("acme", "teacher", "instructor")
    cohort = create_cohort(db, teacher, "Net 101")
    _, code = make_invite(db, teacher, cohort.cohort_id)
    sign_in(client, settings, "personal-0123456789abcdef", "learner-0123456789abcdef")
    shown = client.get(f"/join/{code}", headers={"accept": "text/html"})
    assert shown.status_code == 404
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", shown.text))
    assert "This invite link does not lead to a class for you" in words
    assert "or it is for a class of another organisation than the account you are signed " \
        "in with" in words
    assert "sign in with it and open the link again" in words
    assert "invite:" not in words  # no field name in a sentence for people
    assert f'id="signin-instead" href="/signin?next=/join/{code}"' in shown.text
    # ...which, with the organisation's account, leads to the class
    client.cookies.clear()
    sign_in(client, settings, "acme", "lea")
    assert "Join Net 101" in client.get(f"/join/{code}").text


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_lab_page_is_only_for_its_owner(app_client: tuple[TestClient, Settings]) -> None:
    client, settings = app_client
    sign_in(client, settings)
    token = csrf_of(client.get("/tracks").text)
    created = client.post("/spawn", data={"track": "netplus", "csrf": token},
                          headers={"origin": ORIGIN})
    path = created.headers["location"]
    own = client.get(path)
    assert own.status_code == 200 and "Find the server" in own.text
    # Back on /tracks, the lab in progress is named first, above the whole catalogue (on a
    # phone "Your labs" is a dozen screens down).
    tracks = client.get("/tracks").text
    notice = tracks.index('id="live-labs"')
    assert notice < tracks.index('class="track-group"') and f'href="{path}"' in tracks[notice:]
    assert "Your lab “Find the server” is pending" in tracks
    # ...and again on its card, where "Start this lab" started a second copy of it, the
    # learner's work left in the first.
    card = tracks[tracks.index('id="lab-netplus"'):]
    card = card[:card.index("</form>")]
    assert f'You already have this lab starting: <a href="{path}">continue it</a>' in card
    # Once submitted, the card says it is being graded (not "your work so far stays").
    with Database(settings.db_url).session() as sess:
        sess.execute(update(Scenario).where(Scenario.scenario_id == path.rsplit("/", 1)[1])
                     .values(state="grading"))
    card = client.get("/tracks").text
    card = card[card.index('id="lab-netplus"'):]
    assert f'is being graded: <a href="{path}">see its result</a>' in card
    assert "your work so far stays" not in card[:card.index("</form>")]
    with Database(settings.db_url).session() as sess:
        sess.execute(update(Scenario).where(Scenario.scenario_id == path.rsplit("/", 1)[1])
                     .values(state="pending"))
    # the template's hints are listed with their cost, but shown only while the lab runs
    # and only once revealed (tests/security/test_hint_text_before_reveal.py)
    assert "<code>ip -4 route</code>" not in own.text
    assert "pending" in own.text and own.headers["content-security-policy"]
    status = client.get(path + "/status").json()
    assert status["state"] == "pending" and status["score_ready"] is False
    client.cookies.clear()
    sign_in(client, settings, "evil", "alice")
    for probe in (path, path + "/status", path + "/artifacts/score.json"):
        assert client.get(probe).status_code == 404
    assert client.get("/lab/scn-0000000000000000").status_code == 404
    # A signed-in learner's error pages lead on to their labs, and offer no "Sign in": the
    # header of a refused lab page and of an address with no page at all had neither.
    html = {"accept": "text/html"}
    for refused in (client.get(path, headers=html), client.get("/no-such-page", headers=html)):
        assert refused.status_code == 404
        nav = refused.text[refused.text.index('<nav aria-label="Site">'):]
        nav = nav[:nav.index("</nav>")]
        assert '<a href="/tracks">Labs</a>' in nav and "Signed in as <strong>alice" in nav
        assert 'href="/signin"' not in nav
    # A name no file can have is refused by name, in the message as in details.
    assert client.get(path + "/artifacts/..%2Fforge.db").status_code == 404
    for bad, said in (("/artifacts/audit.jsonl", "name: no such result file; one of "),
                      ("/recordings/x", "name: no such recording (one is named <host>.<n>")):
        resp = client.get(path + bad)
        assert resp.status_code == 404 and resp.json()["message"].startswith(said), resp.text


@pytest.mark.usefixtures("sqlite_only_store")
def test_your_labs_says_when_each_started_in_the_readers_own_zone(
        app_client: tuple[TestClient, Settings]) -> None:
    """Review DD: the labs list's "Started" stayed in UTC beside assignment times shown in
    the browser's zone; it is a <time class="utc"> too, which static/js/local_time.js shows
    in the reader's zone (tests/web/test_browser.py), UTC without the script."""
    client, settings = app_client
    sign_in(client, settings)
    token = csrf_of(client.get("/tracks").text)
    client.post("/spawn", data={"track": "netplus", "csrf": token}, headers={"origin": ORIGIN})
    labs = client.get("/tracks").text
    labs = labs[labs.index('id="your-labs"'):]
    started = re.search(r'<time class="utc" datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)">'
                        r'(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)</time>', labs)
    assert started is not None, labs[:600]
    assert started.group(1).replace("T", " ").replace("Z", " UTC") == started.group(2)


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_lab_slow_to_start_or_ended_unscored_says_so_and_where_to_go(
        app_client: tuple[TestClient, Settings]) -> None:
    """Review CC: a lab that did not start said "Your lab is starting" for ever, with no
    time and nothing more; one that failed showed its reason and the task, and no way on."""
    client, settings = app_client
    _token, path, scenario_id, db = started_lab(client, settings)

    def set_row(**values: object) -> str:
        with db.session() as sess:
            sess.execute(update(Scenario).where(Scenario.scenario_id == scenario_id)
                         .values(**values))
        return client.get(path).text

    fresh = client.get(path).text  # the orchestrator is out of reach: it stays pending
    assert re.search(r'<p id="progress-slow" role="status" hidden>', fresh)
    assert re.search(r'id="progress-time" data-waited="[0-5]?[0-9]"', fresh)
    slow = set_row(created_at=datetime.now(UTC) - timedelta(minutes=5))
    assert re.search(r'id="progress-time" data-waited="30[0-9]">30[0-9] s</span>', slow)
    assert '<p id="progress-slow" role="status">This is taking longer than usual' in slow
    # the way back is one link, "Labs", ending the sentence (the site navigation's "Labs
    # Plans" had been pasted into it: "come back to it from Labs Plans.")
    assert 'come back to it from <a href="/tracks">Labs</a>.</p>' in slow
    # Launching: the lab is built and waits for its services to listen (ready_ports); a
    # learner, on a phone too, reads that, not a bare "starting" beside no terminal.
    assert "its services are starting" not in fresh
    launching = set_row(state="launching")
    assert ('<p id="progress" aria-live="polite">Your lab is starting: its machines are up '
            "and their services are starting. Your terminal opens once they answer. This "
            "page updates by itself.</p>") in launching
    for state in ("failed", "expired", "deleted"):
        ended = set_row(state=state, state_reason="the lab could not start")
        assert "This lab ended before it was graded: it has no score." in ended, state
        assert '<a id="start-again" href="/tracks#lab-' in ended, state
        assert 'id="progress' not in ended and 'id="term-section"' not in ended, state


def test_task_markdown_and_page_text_are_escaped() -> None:
    shown = bytes(error_page(409, 'failed event: <script>alert("x")</script>').body).decode()
    assert "<script>alert" not in shown and "&lt;script&gt;alert" in shown
    html = str(render_markdown("# Hi\n\n<script>alert(1)</script> [x](javascript:alert(1)) "
                               "<img src=x onerror=alert(1)> **bold**"))
    assert "<script>" not in html and "<img" not in html
    assert "href=\"javascript:" not in html and "<strong>bold</strong>" in html
    assert "&lt;script&gt;" in html and "<h1>Hi</h1>" in html


@pytest.mark.usefixtures("sqlite_only_store")
def test_operator_sign_in_and_session_boundaries(
        app_client: tuple[TestClient, Settings]) -> None:
    client, settings = app_client
    assert client.get("/ops").headers["location"] == "/ops/signin"
    wrong = client.post("/ops/signin", data={"token": "x" * 40}, headers={"origin": ORIGIN})
    assert wrong.status_code == 401 and "x" * 40 not in wrong.text
    learner = mint_token(settings.sat, SESSION, {"sub": "operator", "tenant_id": "t",
                                                 "scope": "learner"})
    client.cookies.set("forge_ops", learner)
    assert client.get("/ops").status_code == 303  # a learner session is not an operator's
    client.cookies.clear()
    ok = client.post("/ops/signin", data={"token": SECRETS["OPERATOR_TOKEN"]},
                     headers={"origin": ORIGIN})
    assert ok.status_code == 303 and "forge_ops=" in ok.headers["set-cookie"]
    page = client.get("/ops")
    assert page.status_code == 200
    # The other services are down in this test: the page says so instead of failing.
    assert "orchestrator: unreachable" in page.text and "unreachable" in page.text
    no_token = client.post("/ops/failed-events/reprocess", data={"id": "1"},
                           headers={"origin": ORIGIN})
    assert no_token.status_code == 403
    bad_filter = client.get("/ops", params={"tenant_id": "a b"})
    assert bad_filter.status_code == 400 and "tenant_id:" in bad_filter.text


def test_vendored_terminal_files_match_their_checksums() -> None:
    vendor = importlib.resources.files(WEB_PACKAGE) / STATIC_DIR / "vendor"
    lines = (vendor / "SHA256SUMS").read_text().splitlines()
    names = {line.split()[1] for line in lines}
    assert {"xterm.js", "xterm.css", "addon-fit.js"} <= names
    # The recording player of the result page, pinned with its licence.
    assert {"asciinema-player.min.js", "asciinema-player.css",
            "LICENSE.asciinema-player"} <= names
    for line in lines:
        digest, name = line.split()
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert "@xterm/xterm 6.0.0" in (vendor / "VERSIONS").read_text()
    assert "asciinema-player 3.18.0" in (vendor / "VERSIONS").read_text()


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_instructor_finds_their_classes_from_the_labs_page(
        app_client: tuple[TestClient, Settings]) -> None:
    """Probe BA: /tracks had no way to /teach; an instructor had to know the address."""
    client, settings = app_client
    sign_in(client, settings)
    assert 'id="teach-link"' not in client.get("/tracks").text  # a learner: no classes
    record_role(client.app.state.spawn.ctx.db, "acme", "alice", "instructor",  # type: ignore[attr-defined]
                source="test")
    assert '<a href="/teach" id="teach-link">Your classes</a>' in client.get("/tracks").text


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_repeated_or_late_submit_leads_to_the_labs_page_not_an_error(
        app_client: tuple[TestClient, Settings]) -> None:
    """A second Submit (a double click, a resent form, a tab left open) on a lab already
    handed in landed on "Not possible right now — scenario is completed; only a running lab
    can be submitted", with no way to its result: now it leads to the lab's page, which
    shows where the lab is and its result."""
    client, settings = app_client
    token, path, scenario_id, db = started_lab(client, settings)
    for state in ("grading", "completed", "expired"):
        with db.session() as sess:
            sess.execute(update(Scenario).where(Scenario.scenario_id == scenario_id)
                         .values(state=state, state_reason="submitted"))
        for confirm in ("yes", ""):  # the dialog's form, and the no-script confirmation's
            again = client.post(path + "/submit", data={"csrf": token, "confirm": confirm},
                                headers={"origin": ORIGIN})
            assert again.status_code == 303, (state, again.text)
            assert again.headers["location"] == path, state
    assert "only a running lab" not in client.get(path).text
