"""Attacks on LTI 1.3 launches into Forge (issue 18 item 4).

The platforms are the local LTI platform emulator (tests/support/lti_platform.py: its own
RSA keys, signs launches; no LMS runs here); spawn_service is the real app on uvicorn.
Before: `/lti/login` and `/lti/launch` did not exist (404), nothing could launch. After: a
good launch signs the person in; each attack below gets a plain page, no session, no
recorded role and no enrolment: a launch signed by a key the platform does not publish
(forged), a replayed launch (same id_token and nonce, from the same browser or with its
cookie stolen), a wrong issuer, a wrong audience (and several audiences naming another
authorized party), an unregistered deployment, an expired id_token, an unknown platform at
login, a launch without the login's browser, and a platform of another tenant launching
with the same course id and another tenant's assignment id (it gets a cohort of its own
tenant and never touches the other's), or a learner deep linking.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from forge.bus import NatsServer
from forge.classroom import lti_links
from forge.classroom.assignments import create_assignment
from forge.classroom.cohorts import Manager, create_cohort, enrolled_cohorts
from forge.identity.roles import INSTRUCTOR, OPERATOR, record_role
from forge.services.spawn.web.errors import has_jargon
from forge.store.models import Enrolment, LtiGradeLink, TenantRole

from ..services.conftest import prod_environ
from ..support.lab_catalog import lab_catalog_dir
from ..support.lti_platform import (
    CLAIM,
    INSTRUCTOR_ROLE,
    LtiForge,
    LtiPlatformEmulator,
    forge_with_lti,
    landing_of,
    launch_learner,
    lti_platform,
    new_key,
    run_launch,
)


@dataclass
class World:
    forge: LtiForge
    acme: LtiPlatformEmulator  # registered for tenant acme
    globex: LtiPlatformEmulator  # registered for tenant globex
    assignment_id: str  # an assignment of acme's course cohort


def _world(tmp: Path, nats: NatsServer) -> Iterator[World]:
    environ = prod_environ(tmp / "storage", **nats.client_env(),
                           FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp / "templates")))
    with lti_platform() as acme, lti_platform() as globex:
        globex.name = "globex-lms"
        regs = {"emulator": acme.registration("acme", ""),
                "globex-lms": globex.registration("globex", "")}
        with forge_with_lti(tmp, environ, regs) as forge:
            acme.forge_jwks_url = globex.forge_jwks_url = forge.url + "/lti/jwks"
            db = forge.db
            ann = Manager("acme", "ann", "instructor")
            cohort = create_cohort(db, ann, "Acme course")
            lti_links.link_course(db, "emulator", acme.course_id, "acme", cohort.cohort_id)
            now = datetime.now(UTC)
            row = create_assignment(db, ann, cohort.cohort_id, template_id="netplus",
                                    opens_at=now - timedelta(minutes=1),
                                    closes_at=now + timedelta(hours=1), attempts_allowed=1,
                                    hints_allowed=True, known_templates={"netplus"})
            yield World(forge, acme, globex, row.assignment_id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One SQLite platform for the attacks (each uses its own browser and person)."""
    server = NatsServer()
    server.start()
    try:
        yield from _world(tmp_path_factory.mktemp("lti"), server)
    finally:
        server.close()


@pytest.fixture
def shared(world: World, sqlite_only_store: str) -> Iterator[World]:
    """The shared platform; the emulators' knobs are restored after each test."""
    yield world
    for emu in (world.acme, world.globex):
        emu.claims.clear()
        emu.signing_key = None


def refused(resp: httpx.Response, status: int, words: str) -> None:
    """A plain page for people, with no session cookie set."""
    assert resp.status_code == status, resp.text
    assert "text/html" in resp.headers["content-type"]
    text = html.unescape(re.sub(r"<[^>]+>", " ", resp.text))
    assert words in text, text
    assert not has_jargon(text) and "token" not in text.lower()
    assert "forge_session" not in resp.headers.get("set-cookie", "")


def _roles(forge: LtiForge, subject: str) -> int:
    with forge.db.read() as sess:
        return int(sess.scalar(select(func.count()).select_from(TenantRole).where(
            TenantRole.subject == subject)) or 0)


def _launch(w: World, user: str, emu: LtiPlatformEmulator | None = None,
            **kw: Any) -> httpx.Response:
    emu = emu or w.acme
    kw.setdefault("custom", {"forge_assignment": w.assignment_id})
    _, answer = run_launch(w.forge.url, emu.login_url(w.forge.url, user, **kw))
    return answer


UNTRUSTED = "could not be trusted"


def test_a_good_launch_signs_in_and_lands_on_the_assignment(shared: World) -> None:
    landing = launch_learner(shared.forge.url, shared.acme, shared.assignment_id, "ok-ada")
    assert landing.url == f"/lti/assignment/{shared.assignment_id}"
    assert "<h1>Find the server</h1>" in landing.page and "Start this lab" in landing.page
    # Start says it is starting and a second press posts nothing, as on the lab list.
    assert '<script src="/static/js/start.js" defer></script>' in landing.page
    assert '<p class="start-progress" role="status"></p>' in landing.page


def test_a_platform_clock_a_little_ahead_still_launches(shared: World) -> None:
    """An id_token's `iat` a moment ahead of Forge's clock (the platform's clock a fraction
    of a second ahead, its whole seconds rounded down) was "not yet valid": the launch was
    refused, for a clock off by a tenth of a second one launch in ten. Single sign-on
    allows a minute either way; so does a launch now (an hour ahead is still refused)."""
    now = int(time.time())
    shared.acme.claims.update(iat=now + 20, exp=now + 320)
    ahead = _launch(shared, "fay")
    assert ahead.status_code == 200 and landing_of(ahead).startswith("/lti/assignment/")
    shared.acme.claims.update(iat=now + 3600, exp=now + 3900)
    refused(_launch(shared, "gus"), 401, UNTRUSTED)


def test_a_forged_launch_signature_is_refused(shared: World) -> None:
    shared.acme.signing_key = new_key()  # same key id, a key the platform never published
    refused(_launch(shared, "eve"), 401, UNTRUSTED)
    assert _roles(shared.forge, "lti.eve") == 0


def test_a_replayed_launch_is_refused(shared: World) -> None:
    w = shared
    browser = w.forge.browser()
    login = w.acme.login_url(w.forge.url, "rex", custom={"forge_assignment": w.assignment_id})
    started = browser.get(login, follow_redirects=False)
    captured = {c.name: (c.value or "", c.path) for c in browser.cookies.jar
                if c.name.startswith("forge_lti")}  # the login cookies, stolen
    # The state (kept to /lti/), the browser's new binding and, as it had none, the state's
    # whole-site marker.
    assert len(captured) == 3, captured
    form = httpx.get(started.headers["location"], timeout=30).json()
    first = browser.post(form["action"], data=form["fields"], follow_redirects=False)
    assert first.status_code == 200 and landing_of(first).startswith("/lti/assignment/")
    # The login cookie ends with its launch: the same browser cannot post it again.
    refused(browser.post(form["action"], data=form["fields"], follow_redirects=False), 403,
            "another browser")
    thief = w.forge.browser()  # with the captured launch and login cookie: nonce used
    for name, (value, path) in captured.items():
        thief.cookies.set(name, value, path=path)
    refused(thief.post(form["action"], data=form["fields"], follow_redirects=False), 409,
            "already used")


@pytest.mark.parametrize("claims,status,words", [
    ({"iss": "http://127.0.0.1:1/impostor"}, 404, "not registered"),
    ({"aud": "another-tool"}, 404, "not registered"),
    ({"aud": ["forge-tool-1", "another-tool"], "azp": "another-tool"}, 401, UNTRUSTED),
    ({CLAIM + "deployment_id": "dep-unknown"}, 401, UNTRUSTED),
    ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 900}, 401, UNTRUSTED),
    ({"exp": None}, 401, UNTRUSTED),
], ids=["issuer", "audience", "azp", "deployment", "expired", "no-exp"])
def test_a_launch_with_wrong_claims_is_refused(shared: World, claims: dict[str, Any],
                                               status: int, words: str) -> None:
    shared.acme.claims.update(claims)
    refused(_launch(shared, "mal"), status, words)
    assert _roles(shared.forge, "lti.mal") == 0


def test_unknown_platform_and_foreign_browser_are_refused(shared: World) -> None:
    forge = shared.forge
    accept = {"accept": "text/html"}
    unknown = forge.browser().get("/lti/login?iss=http://127.0.0.1:1/lms&login_hint=x&"
                                  f"target_link_uri={forge.url}/lti/launch", headers=accept)
    refused(unknown, 404, "not registered")
    elsewhere = forge.browser().get(
        f"/lti/login?iss={shared.acme.issuer}&client_id={shared.acme.client_id}&login_hint=x"
        "&target_link_uri=https://evil.example/lti/launch", headers=accept)
    refused(elsewhere, 401, UNTRUSTED)
    # The launch posted into a browser that did not begin the login.
    browser = forge.browser()
    started = browser.get(shared.acme.login_url(forge.url, "ivo"), follow_redirects=False)
    form = httpx.get(started.headers["location"], timeout=30).json()
    refused(forge.browser().post(form["action"], data=form["fields"]), 403,
            "another browser")
    assert _roles(forge, "lti.ivo") == 0


def test_another_tenants_platform_cannot_touch_its_course(shared: World) -> None:
    db = shared.forge.db
    acme_course = lti_links.course_of(db, "emulator", shared.acme.course_id)
    assert acme_course is not None
    # Globex's LMS launches with the same course id and acme's assignment id.
    answer = _launch(shared, "gus", shared.globex)
    refused(answer, 404, "not set up")
    theirs = lti_links.course_of(db, "globex-lms", shared.globex.course_id)
    assert theirs is not None and theirs.cohort_id != acme_course.cohort_id
    assert theirs.tenant_id == "globex"
    assert enrolled_cohorts(db, "acme", "lti.gus") == []
    with db.read() as sess:
        assert sess.get(Enrolment, (acme_course.cohort_id, "lti.gus")) is None
    # Nor may acme's instructor link a course of globex's platform to acme's cohort.
    teacher, ok = run_launch(shared.forge.url, shared.acme.login_url(
        shared.forge.url, "tia", roles=(INSTRUCTOR_ROLE,)))
    assert ok.status_code == 200
    link = teacher.post(f"/v1/cohorts/{acme_course.cohort_id}/lti-course",
                        json={"platform": "globex-lms", "context_id": "course-x"},
                        headers={"origin": shared.forge.url})
    assert link.status_code == 403, link.text  # an instructor links no course at all
    # Nor acme's operator: a platform of another tenant is no platform of theirs.
    record_role(db, "acme", "lti.tia", OPERATOR)
    try:
        link = teacher.post(f"/v1/cohorts/{acme_course.cohort_id}/lti-course",
                            json={"platform": "globex-lms", "context_id": "course-x"},
                            headers={"origin": shared.forge.url})
        assert link.status_code == 404, link.text
        assert lti_links.course_of(db, "globex-lms", "course-x") is None
    finally:
        record_role(db, "acme", "lti.tia", INSTRUCTOR)


def test_a_learner_cannot_deep_link(shared: World) -> None:
    refused(_launch(shared, "lou", message="LtiDeepLinkingRequest", custom={}), 403,
            "Only the course's instructors")
    assert _roles(shared.forge, "lti.lou") == 0  # refused before anything is recorded
    refused(shared.forge.browser().post("/lti/deep-link", data={"template_id": "netplus"}),
            403, "activity chooser")


def test_an_instructors_student_view_is_not_a_learners_seat(shared: World) -> None:
    """A teacher of the course launching as a student (the LMS's student view, red team
    AQ) is not seated as a learner of the class they teach, gets no grade link, and lands
    on /teach instead of an assignment that is not theirs (review AR); a learner who
    later teaches the course (a TA) stops being its learner."""
    db = shared.forge.db
    course = lti_links.course_of(db, "emulator", shared.acme.course_id)
    assert course is not None
    _, ok = run_launch(shared.forge.url, shared.acme.login_url(
        shared.forge.url, "tim", roles=(INSTRUCTOR_ROLE,)))
    assert ok.status_code == 200 and landing_of(ok) == "/teach"
    _, view = run_launch(shared.forge.url, shared.acme.login_url(
        shared.forge.url, "tim", custom={"forge_assignment": shared.assignment_id}))
    assert view.status_code == 200 and landing_of(view) == "/teach"
    ta = launch_learner(shared.forge.url, shared.acme, shared.assignment_id, "tara")
    assert ta.url == f"/lti/assignment/{shared.assignment_id}"
    _, now_teaching = run_launch(shared.forge.url, shared.acme.login_url(
        shared.forge.url, "tara", roles=(INSTRUCTOR_ROLE,)))
    assert landing_of(now_teaching) == "/teach"
    with db.read() as sess:
        for who in ("lti.tim", "lti.tara"):
            assert sess.get(Enrolment, (course.cohort_id, who)) is None, who
        links = sess.scalar(select(func.count()).select_from(LtiGradeLink).where(
            LtiGradeLink.subject == "lti.tim"))
    assert links == 0


def test_a_launch_field_given_twice_is_refused(shared: World) -> None:
    """The launch form kept the last of a repeated field, where the query string and every
    other form refuse a repeat: which `state` or `id_token` counted was the parser's choice.
    Refused, twice in the form or once in the query and once in the form; nothing is
    recorded, and the launch itself, sent once, still signs in."""
    w = shared
    browser = w.forge.browser()
    started = browser.get(w.acme.login_url(w.forge.url, "dup",
                                           custom={"forge_assignment": w.assignment_id}),
                          follow_redirects=False)
    form = httpx.get(started.headers["location"], timeout=30).json()
    fields: dict[str, str] = form["fields"]
    twice = {**fields, "state": ["forged", fields["state"]]}
    refused(browser.post(form["action"], data=twice, follow_redirects=False), 400,
            "same detail twice")
    refused(browser.post(form["action"] + "?state=forged", data=fields,
                         follow_redirects=False), 400, "same detail twice")
    assert _roles(w.forge, "lti.dup") == 0
    once = browser.post(form["action"], data=fields, follow_redirects=False)
    assert once.status_code == 200 and landing_of(once).startswith("/lti/assignment/")


HTTPS = {"x-forwarded-proto": "https"}


def _set_cookies(resp: httpx.Response) -> dict[str, str]:
    """The cookies a response sets over https (httpx keeps no Secure cookie on http)."""
    return {c.split("=", 1)[0]: c.split("=", 1)[1].split(";", 1)[0]
            for c in resp.headers.get_list("set-cookie")}


def test_a_launch_state_tossed_from_a_sibling_site_does_not_sign_in(shared: World) -> None:
    """Over https the launch's sign-in state was a path-scoped `__Secure-` cookie, which a
    sibling subdomain served over https may set for the parent domain: mallory began a
    launch, planted her state cookie in the victim's browser and had it post her id_token
    and state (an auto-submitting form), which signed the victim in as mallory. The state
    now counts only bound to this browser's `__Host-forge_lti` cookie or, begun in a browser
    that had none yet, with its state's whole-site `__Host-forge_ltiw_` marker: no sibling
    can set either."""
    w = shared
    headers = {**HTTPS, "origin": w.acme.issuer, "sec-fetch-site": "cross-site"}

    def begin(cookie: str = "") -> tuple[dict[str, str], dict[str, Any]]:
        started = w.forge.browser().get(w.acme.login_url(
            w.forge.url, "mallory", custom={"forge_assignment": w.assignment_id}),
            headers={**HTTPS, "cookie": cookie}, follow_redirects=False)
        assert started.status_code == 302, started.text
        return _set_cookies(started), httpx.get(started.headers["location"], timeout=30).json()

    def post(form: dict[str, Any], cookie: str) -> httpx.Response:
        return w.forge.browser().post(form["action"], data=form["fields"],
                                      headers={**headers, "cookie": cookie})

    victims = _set_cookies(w.forge.browser().get(
        w.acme.login_url(w.forge.url, "victim"), headers=HTTPS, follow_redirects=False))
    victim = f"__Host-forge_lti={victims.get('__Host-forge_lti')}"
    first, first_form = begin()  # mallory's new browser: her state has a whole-site marker
    binding = first.get("__Host-forge_lti")
    later, form = begin(f"__Host-forge_lti={binding}")  # bound to her browser's binding
    for cookies in (first, later):
        name, token = next((n, v) for n, v in cookies.items()
                           if n.startswith("__Secure-forge_lti_"))
        name = name.removeprefix("__Secure-")  # the state's cookie, kept to /lti/
        planted = f"__Secure-{name}={token}"  # what a sibling can set: path-scoped
        marker = f"forge_ltiw_{name[-16:]}=1"  # a first login's whole-site marker
        for cookie in (planted, f"{planted}; {victim}", f"{planted}; __Secure-forge_lti="
                       f"{binding}", f"__Secure-forge_ltiw_{name[-16:]}={token}; {victim}",
                       f"{planted}; __Secure-{marker}; {victim}", f"{planted}; {marker}"):
            refused(post(first_form if cookies is first else form, cookie), 403,
                    "another browser")
    assert _roles(w.forge, "lti.mallory") == 0
    assert any(n.startswith("__Host-forge_ltiw_") for n in first), first
    assert any(n.startswith("__Secure-forge_lti_") for n in later), later
    # In mallory's own browser the same launch signs her in.
    own = post(form, "; ".join(f"{n}={v}" for n, v in later.items()))
    assert own.status_code == 200 and landing_of(own).startswith("/lti/assignment/"), own.text
    assert "__Host-forge_session=" in own.headers["set-cookie"]


def test_launches_begun_at_once_in_a_new_browser_all_open(shared: World) -> None:
    """Several activities of one course page begin their logins at once in a browser with
    no LTI binding yet: each makes one, the browser keeps the last, and every launch still
    opens (their states are whole-site until the browser has a binding)."""
    w = shared
    logins = [w.forge.browser().get(w.acme.login_url(
        w.forge.url, "iris", custom={"forge_assignment": w.assignment_id}),
        headers=HTTPS, follow_redirects=False) for _ in range(2)]
    jar: dict[str, str] = {}
    for login in logins:
        jar.update(_set_cookies(login))  # the last binding wins
    assert len([n for n in jar if n.startswith("__Host-forge_ltiw_")]) == 2, jar
    # What a first login keeps whole-site rides on every request of the site: a marker of a
    # few bytes, not its state (about 630 bytes: logins a cross-site page began at once in
    # a new browser grew its Cookie header past a proxy's 8 KiB, and the site was shut).
    for login in logins:
        site_wide = [c.split(";", 1)[0] for c in login.headers.get_list("set-cookie")
                     if "; path=/;" in c.lower() + ";" and "__Host-forge_lti=" not in c]
        assert len(site_wide) == 1 and len(site_wide[0]) < 40, site_wide
    cookie = "; ".join(f"{n}={v}" for n, v in jar.items())
    for login in logins:
        form = httpx.get(login.headers["location"], timeout=30).json()
        opened = w.forge.browser().post(form["action"], data=form["fields"], headers={
            **HTTPS, "origin": w.acme.issuer, "cookie": cookie})
        assert opened.status_code == 200, opened.text
        assert landing_of(opened).startswith("/lti/assignment/")


def _keep(jar: dict[str, str], resp: httpx.Response) -> None:
    """What a browser keeps of a response's cookies: set, or removed (Max-Age=0)."""
    for line in resp.headers.get_list("set-cookie"):
        name, value = line.split(";", 1)[0].split("=", 1)
        if "max-age=0" in line.lower():
            jar.pop(name, None)
        else:
            jar[name] = value


def test_a_flood_of_logins_does_not_lock_a_browser_out_of_launches(shared: World) -> None:
    """A cross-site page firing logins in a loop piled up one ~640-byte `/lti/` state
    cookie per login for 10 minutes, all sent with every /lti/ request: a dozen passed
    nginx's 8 KiB header limit, about a hundred Forge's own 64 KiB (measured: 431), and the
    learner could launch nothing until they expired. Now a browser keeps at most
    MAX_STATES: each login drops the oldest (an older release's state first), and the
    course page's logins begun last still open."""
    from forge.services.spawn.web.lti_login_state import MAX_STATES, cookie_name
    from forge.tokens import LTI_PENDING, codec
    from forge.tokens.kinds import ISSUER

    w = shared
    url = w.acme.login_url(w.forge.url, "oona", custom={"forge_assignment": w.assignment_id})
    browser = w.forge.browser()
    # A launch under way through an upgrade: its state, made by the release before (no
    # browser binding claim), is refused once, telling the learner to launch again ...
    stale = codec.mint(w.forge.app.state.spawn.settings.sat, typ=LTI_PENDING.typ,
                       issuer=ISSUER, audience=LTI_PENDING.audience, ttl_s=600,
                       claims={"platform": "emulator", "state": "s", "nonce": "n"})
    old = f"__Secure-{cookie_name('s')}"
    refused(browser.post("/lti/launch", data={"state": "s", "id_token": "x.y.z"}, headers={
        **HTTPS, "origin": w.acme.issuer, "cookie": f"{old}={stale}"}), 403,
        "Open the activity again from your course.")
    jar = {old: stale}  # ... and dropped by the next login before any other

    def login(cookies: dict[str, str]) -> httpx.Response:
        started = browser.get(url, headers={**HTTPS, "cookie": "; ".join(
            f"{n}={v}" for n, v in cookies.items())}, follow_redirects=False)
        assert started.status_code == 302, started.text
        return started

    for _ in range(3 * MAX_STATES):  # the flood, one login after another
        _keep(jar, login(jar))
    states = [n for n in jar if n.startswith("__Secure-forge_lti_")]
    assert len(states) == MAX_STATES and old not in jar, states
    header = "; ".join(f"{n}={v}" for n, v in jar.items())
    assert len(header) < 8 * 1024 // 2, len(header)
    # The course page's activities, begun at once (one jar seen by each), all launch.
    snapshot = dict(jar)
    begun = [login(snapshot) for _ in range(3)]
    for started in begun:
        _keep(jar, started)
    for started in begun:
        form = httpx.get(started.headers["location"], timeout=30).json()
        opened = browser.post(form["action"], data=form["fields"], headers={
            **HTTPS, "origin": w.acme.issuer, "cookie": "; ".join(
                f"{n}={v}" for n, v in jar.items())})
        assert opened.status_code == 200, opened.text
        assert landing_of(opened).startswith("/lti/assignment/")
