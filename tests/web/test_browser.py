"""Browser tests (Playwright + Debian's Chromium) of the learner and operator UI, end to end,
on one platform in dev with BILLING_MODE=stub (the stand-in payment gateway).

The learner's journey (journey.py) twice: with the mouse, and with the keyboard only. The mouse
journey also types the reference solution (then spoils one answer), extends the lab, checks
what a check answer and the evidence hold, opens every page at 360 px with an axe-core scan,
and the operator reprocesses an injected failed completion event for that scenario. The ccna
test opens a terminal tab per learner host and exercises the terminal (terminal_ui.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from forge.content import content_path
from forge.identity.roles import record_role
from forge.retention import HoldStore
from forge.services.scoreboard.scoring import CONSUMER
from forge.store.models import FailedEvent, Scenario
from forge_verify.bundle import read_bundle

from ..labs.conftest import completed_event
from .conftest import OPERATOR_TOKEN, WebPlatform, docs_images, running_web_platform
from .journey import (
    Driver,
    assert_finger_sized,
    buy_and_start,
    check_hints_and_submit,
    check_pages,
    line,
    read_result,
    save_key_and_sign_back_in,
    survive_drop_and_reload,
)
from .relay import CuttableRelay
from .terminal_ui import exercise_learner_terminal

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store

DONE = "__WEB_SOLUTION_DONE__"


def type_solution(page: Page) -> None:
    """Type solutions/netplus.sh into the focused terminal as a heredoc, line by line."""
    script = (content_path("solutions") / "netplus.sh").read_text(encoding="utf-8")
    lines = ["bash <<'FORGE_EOF'", *script.splitlines(), "FORGE_EOF", f"echo {DONE} $?"]
    for text in lines:
        if text:
            page.keyboard.insert_text(text)
        page.keyboard.press("Enter")


def give_more_time(page: Page, url: str, subject: str, zone: str, until: str,
                   said: str) -> None:
    """On /teach, give ``subject`` more time: ``until`` typed into the field that names
    the page's time ``zone``; the page then says ``subject`` has until ``said``."""
    page.goto(url + "/teach")
    page.get_by_text("Change the running class").click()
    form = page.locator("form", has=page.get_by_role("button", name="Give more time"))
    form.get_by_label("Learner's account id").fill(subject)
    form.get_by_label(f"Their due time ({zone}; after the class's)").fill(until)
    page.get_by_role("button", name="Give more time").click()
    expect(page.locator("#notice")).to_contain_text(f"{subject} now has until {said}")


def inject_failed_event(platform: WebPlatform, scenario_id: str) -> int:
    """Store the scenario's real completion event as a failed one (as after an outage)."""
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's loop
        event = pool.submit(asyncio.run, completed_event(platform.nats_admin_url,
                                                         scenario_id)).result()
    now = datetime.now(UTC)
    with platform.db.session() as sess:
        row = FailedEvent(consumer=CONSUMER, subject="forge.scenario.completed",
                          msg_id=f"injected-{scenario_id}", scenario_id=scenario_id,
                          payload=json.dumps(event), error="injected: storage was not writable",
                          attempts=2, status="failed", first_failed_at=now, last_failed_at=now)
        sess.add(row)
        sess.flush()
        return int(row.id)


def add_reprocessed_history(platform: WebPlatform, count: int) -> None:
    """Store `count` long-settled events, as a platform in use for a year has."""
    now = datetime.now(UTC)
    with platform.db.session() as sess:
        sess.add_all(FailedEvent(consumer=CONSUMER, subject="forge.scenario.completed",
                                 msg_id=f"settled-{i}", scenario_id=None, payload="{}",
                                 error="settled: storage was full", attempts=1,
                                 status="reprocessed", first_failed_at=now,
                                 last_failed_at=now, reprocessed_at=now)
                     for i in range(count))


@pytest.fixture(scope="module")
def web_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    """The whole platform in dev with BILLING_MODE=stub, shared by this module's tests."""
    with running_web_platform(tmp_path_factory.mktemp("journey"), FORGE_ENV="dev",
                              BILLING_MODE="stub") as platform:
        yield platform


@pytest.mark.root
def test_the_learners_journey_with_the_mouse(
    web_platform: WebPlatform, page: Page, browser: Browser
) -> None:
    url = web_platform.url
    anonymous = page.context.storage_state()
    drive = Driver(page, keyboard_only=False)
    problems: list[str] = []
    sid = buy_and_start(drive, url, problems)

    # Extend is shown with the plan's maximum; near the end of the lab it buys more time.
    extend = page.get_by_role("button", name="Extend by 15 min")
    expect(extend).to_be_disabled()
    expect(page.locator("#extend-note")).to_contain_text("Up to 180 min in all on your plan")
    expect(page.locator("#extend-note")).to_contain_text("Available in")
    with web_platform.db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None
        row.expires_at = datetime.now(UTC) + timedelta(minutes=5)
        owner = f"{row.tenant_id} / {row.subject}"  # the buyer's new account
        tenant = row.tenant_id
    page.reload()
    expect(page.locator("#remaining")).to_contain_text(re.compile(r"^[45] min"))
    extend.click()
    expect(page.locator("#remaining")).to_contain_text(re.compile(r"^(19|20) min"))
    expect(extend).to_be_disabled()
    expect(page.locator("#term-status")).to_have_text("Connected to the learner host.",
                                                      timeout=20_000)

    # The work: the reference solution, then one answer spoilt (a failed criterion).
    drive.into_terminal()
    type_solution(page)
    rows = page.locator("#terminal .xterm-rows")
    expect(rows).to_contain_text(f"{DONE} 0", timeout=180_000)
    drive.run("echo SN-000000000000 > /workspace/serial.txt; echo spoilt-$((6*7))")
    expect(line(rows, "spoilt-42")).to_have_count(1, timeout=20_000)
    survive_drop_and_reload(drive, web_platform, "mouse")
    # A check answer says passed or not and why, never the answer itself.
    # Each API call closes its connection: one left idle is closed by the server after its
    # keep-alive time, and a call reusing it just then was reset (ECONNRESET, seen once).
    checked = page.request.post(f"{url}/v1/scenarios/{sid}/checks/find-server",
                                 headers={"origin": url, "connection": "close"})
    assert checked.ok and checked.json()["passed"] is True
    assert set(checked.json()) == {"criterion", "passed", "reasons", "final", "note"}
    assert "SN-" not in checked.text()
    if (images := docs_images()) is not None:
        page.screenshot(path=str(images / "learner-lab.png"))
    learner = page.context.storage_state()
    check_pages(browser, anonymous, {
        "signin": url + "/signin", "plans": url + "/plans", "error-404": url + "/no/such/page",
        "access-link-error": url + "/v1/access/scn-0123456789abcdef?token=x"}, problems)
    check_pages(browser, learner, {"lab": page.url}, problems)  # running: terminal shown

    check_hints_and_submit(drive, "inventory-serial")
    again = page.request.post(f"{url}/v1/scenarios/{sid}/checks/inventory-serial",
                               headers={"origin": url, "connection": "close"})
    assert again.status in (409, 429)  # checked just now, or the lab is already sealed
    read_result(drive, sid, 3, "inventory-serial", "mouse")
    if images is not None:
        page.screenshot(path=str(images / "learner-result.png"), full_page=True)
    downloads = page.locator("#result .downloads").get_by_role("link")
    assert sorted(downloads.all_inner_texts()) == [
        "evidence.tar.zst", "score.json", "verdict.pub", "verdict.sig"]
    score = json.loads(page.request.get(f"{url}/lab/{sid}/artifacts/score.json").body())
    expect(page.locator("#score-value")).to_have_text(f"{score['score']:.2f}")
    assert [h["id"] for h in score["hints"]] == ["h1", "h2"]
    bundle = page.request.get(f"{url}/lab/{sid}/artifacts/evidence.tar.zst")
    aids = json.loads(read_bundle(bundle.body())["aids.json"])
    assert [(c["criterion"], c["passed"]) for c in aids["task_checks"]] == [
        ("find-server", True), ("inventory-serial", False)]
    cast = re.compile(rf"^/lab/{re.escape(sid)}/recordings/learner\.\d+\.cast$")
    expect(page.locator("#recordings").get_by_role("link", name="download").first
           ).to_have_attribute("href", cast)
    check_pages(browser, learner, {"tracks": url + "/tracks", "result": page.url,
                                   "account": url + "/account"}, problems)

    # The operator signs in, finds that scenario, and reprocesses an injected failed event.
    # A year of settled events first: the new failure is listed all the same.
    add_reprocessed_history(web_platform, 1100)
    event_id = inject_failed_event(web_platform, sid)
    HoldStore(web_platform.storage).hold(sid, "dispute by the learner's employer")
    page.goto(url + "/ops")
    expect(page).to_have_url(url + "/ops/signin")
    page.get_by_label("Operator token").fill(OPERATOR_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url + "/ops")
    page.get_by_label("Tenant").fill(tenant)
    page.get_by_role("button", name="Filter").click()
    scenario_row = page.locator("#scenarios tbody tr").filter(has_text=sid)
    expect(scenario_row).to_contain_text("completed")
    expect(scenario_row).to_contain_text(owner)
    for service in ("spawn_service", "orchestrator", "scoreboard"):
        expect(page.get_by_role("heading", name=service)).to_contain_text("ready")
    expect(page.locator("#policy-hash")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    expect(page.locator("#holds tbody tr").filter(has_text=sid)).to_contain_text("dispute")
    expect(page.locator("#keys tbody tr")).to_contain_text("current")
    event_row = page.locator("#events tbody tr").filter(has_text="injected: storage")
    expect(event_row).to_contain_text("failed")
    if images is not None:
        page.screenshot(path=str(images / "operator.png"), full_page=True)
    check_pages(browser, anonymous, {"ops-signin": url + "/ops/signin"}, problems)
    check_pages(browser, page.context.storage_state(), {"ops": url + "/ops"}, problems)
    page.get_by_role("button", name=f"Reprocess event {event_id}").click()
    expect(page.get_by_role("status")).to_have_text(
        "Reprocessed 1 event(s); 0 still failing.")
    expect(page.locator("#reprocessed tbody tr").filter(has_text=sid)).to_contain_text("reprocessed")
    expect(page.locator("#events tbody tr").filter(has_text=sid)).to_have_count(0)
    with web_platform.db.read() as sess:
        stored = sess.get(FailedEvent, event_id)
        assert stored is not None and stored.status == "reprocessed"
    assert problems == [], "\n".join(problems)


@pytest.mark.root
def test_the_learners_journey_with_the_keyboard_only(
    web_platform: WebPlatform, page: Page, browser: Browser
) -> None:
    """The same journey; no click, no fill: Tab / Shift+Tab, Enter, typing, Ctrl+Shift+X."""
    drive = Driver(page, keyboard_only=True)
    sid = buy_and_start(drive, web_platform.url)
    drive.into_terminal()
    drive.run("echo 10.61.2.23:1 > /workspace/target.txt")  # a wrong port: a failed criterion
    survive_drop_and_reload(drive, web_platform, "keys")
    # Full screen and back by keyboard: there Ctrl+Shift+X leads to the exit button.
    section = page.locator("#term-section")
    drive.press(page.get_by_role("button", name="Full screen"))
    expect(section).to_have_class(re.compile(r"\bis-fullscreen\b"))
    drive.into_terminal()
    page.keyboard.press("Control+Shift+X")
    leave = page.get_by_role("button", name="Exit full screen")
    expect(leave).to_be_focused()
    drive.press(leave)
    expect(section).not_to_have_class(re.compile(r"\bis-fullscreen\b"))
    check_hints_and_submit(drive, "find-server")
    read_result(drive, sid, 0, "find-server", "keys")
    save_key_and_sign_back_in(drive, browser, web_platform.url)
    assert drive.pointer_used() is None


@pytest.mark.root
def test_a_terminal_tab_per_learner_host_reachable_by_keyboard(
    web_platform: WebPlatform, relay: CuttableRelay, page: Page
) -> None:
    """ccna opens both routers to the learner: two tabs (arrow keys move between them), and
    each tab's terminal is a shell on its own host. The page is reached through a relay the
    test cuts: the terminal then survives a network drop (terminal_ui.py has those steps,
    with copy/paste, the focus-escape key, full screen and the phone width)."""
    key = web_platform.learner_key("academy", "sasha")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=relay.url)
    page.goto(relay.url + "/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in with API key").click()
    expect(page.get_by_role("heading", name="Static routing between two LANs")).to_be_visible()
    page.get_by_role("button", name="Start this lab: Static routing between two LANs").click()
    expect(page.locator("#state")).to_have_text("running", timeout=60_000)
    expect(page.locator("#term-status")).to_have_text("Connected to the learner host.",
                                                      timeout=20_000)
    first, second = page.get_by_role("tab", name="learner"), page.get_by_role("tab", name="r2")
    expect(first).to_have_attribute("aria-selected", "true")
    expect(page.locator("#term-panel-r2")).to_be_hidden()

    first.focus()
    page.keyboard.press("ArrowRight")
    expect(second).to_be_focused()
    expect(second).to_have_attribute("aria-selected", "true")
    expect(first).to_have_attribute("aria-selected", "false")
    expect(page.locator("#term-panel-learner")).to_be_hidden()
    expect(page.locator("#term-status-r2")).to_have_text("Connected to the r2 host.",
                                                         timeout=20_000)
    page.locator("#terminal-r2").click()
    page.keyboard.insert_text('echo "on-$(hostname)-$((6*7))"')
    page.keyboard.press("Enter")
    expect(page.locator("#terminal-r2 .xterm-rows")).to_contain_text("on-r2-42",
                                                                    timeout=20_000)

    second.focus()
    page.keyboard.press("Home")
    expect(first).to_have_attribute("aria-selected", "true")
    page.locator("#terminal").click()
    page.keyboard.insert_text('echo "on-$(hostname)-$((6*7))"')
    page.keyboard.press("Enter")
    expect(page.locator("#terminal .xterm-rows")).to_contain_text("on-learner-42",
                                                                 timeout=20_000)
    # Both terminals stay open (two of the lab's terminals), one per host.
    expect(page.locator("#term-status-r2")).to_have_text("Connected to the r2 host.")
    exercise_learner_terminal(page, relay)


@pytest.mark.root
def test_an_instructor_runs_a_class_and_a_learner_joins(
    web_platform: WebPlatform, page: Page, browser: Browser
) -> None:
    """/teach: create a class and an invite link with the mouse; the learner's /join page
    asks before joining, and the class's assignment shows on their labs page; the
    instructor gives them more time from the page and their labs page shows it. The pages
    and the class's dashboard at 360 px with an axe scan."""
    url = web_platform.url
    record_role(web_platform.db, "acme", "ivy", "instructor", source="test")
    key = web_platform.learner_key("acme", "ivy")
    page.goto(url + "/signin?next=/teach")
    page.get_by_label("Your sign-in key or API key").fill(key)
    page.get_by_role("button", name="Sign in with API key or sign-in key").click()
    expect(page).to_have_url(url + "/teach")
    page.get_by_label("Name").fill("Networking 101")
    page.get_by_role("button", name="Create class").click()
    expect(page.get_by_role("heading", name="Networking 101")).to_be_visible()
    page.get_by_label("Due (UTC)").fill("2099-01-01T09:00")
    page.get_by_role("button", name="Assign lab").click()
    expect(page.locator("li", has_text="due 2099-01-01T09:00:00Z")).to_be_visible()
    page.get_by_role("button", name="Make an invite link").click()
    invite = page.locator("#invite-url").input_value()
    assert invite.startswith(url + "/join/fgi_")
    page.get_by_role("link", name="Dashboard").click()  # the class's dashboard (issue 18)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Networking 101")
    expect(page.locator(".fig-started")).to_have_text("0 of 0")
    problems: list[str] = []
    check_pages(browser, page.context.storage_state(),
                {"teach": url + "/teach", "dashboard": page.url}, problems)

    learner = browser.new_context()
    try:
        joiner = learner.new_page()
        joiner.goto(invite)  # signed out: sign in first, then back to the link
        joiner.get_by_label("Your sign-in key or API key").fill(
            web_platform.learner_key("acme", "jo"))
        joiner.get_by_role("button", name="Sign in with API key or sign-in key").click()
        expect(joiner).to_have_url(invite)
        check_pages(browser, learner.storage_state(), {"join": invite}, problems)
        joiner.get_by_role("button", name="Join Networking 101").click()
        expect(joiner.locator("#assignments")).to_contain_text("due 2099-01-01T09:00:00Z")
        # The instructor gives Jo a week more from the page; Jo's list shows it.
        give_more_time(page, url, "jo", "UTC", "2099-01-08T09:00", "2099-01-08T09:00:00Z")
        joiner.reload()
        expect(joiner.locator("#assignments")).to_contain_text("2099-01-08T09:00:00Z")
    finally:
        learner.close()
    assert problems == [], "\n".join(problems)


@pytest.mark.root
def test_an_instructor_and_a_learner_read_and_give_times_in_their_own_zones(
    web_platform: WebPlatform, browser: Browser
) -> None:
    """An instructor in New York types a due time as their clocks show it and the class
    gets that moment (14:00 UTC for 09:00 EST); the page shows it, and names the zone, as
    they typed it; their learner in Tokyo reads the same moment on their labs page in
    Tokyo time (23:00). The store keeps UTC."""
    url = web_platform.url
    record_role(web_platform.db, "acme", "nia", "instructor", source="test")
    teacher = browser.new_context(timezone_id="America/New_York")
    learner = browser.new_context(timezone_id="Asia/Tokyo")
    try:
        page = teacher.new_page()
        page.goto(url + "/signin?next=/teach")
        page.get_by_label("Your sign-in key or API key").fill(
            web_platform.learner_key("acme", "nia"))
        page.get_by_role("button", name="Sign in with API key or sign-in key").click()
        expect(page).to_have_url(url + "/teach")
        page.get_by_label("Name").fill("Zones 101")
        page.get_by_role("button", name="Create class").click()
        page.get_by_label("Lab", exact=True).select_option("netplus")
        page.get_by_label("Opens (America/New_York)").fill("2098-12-31T09:00")
        page.get_by_label("Due (America/New_York)").fill("2099-01-01T09:00")
        page.get_by_role("button", name="Assign lab").click()
        expect(page.locator("li", has_text="due 2099-01-01 09:00")).to_contain_text(
            "due 2099-01-01 09:00 (America/New_York)")
        page.get_by_role("button", name="Make an invite link").click()
        invite = page.locator("#invite-url").input_value()
        cohort = re.search(r'href="/teach/cohorts/([^"]+)"', page.content())
        assert cohort is not None
        stored = web_platform.client().get(
            f"/v1/cohorts/{cohort.group(1)}",
            headers={"x-api-key": web_platform.learner_key("acme", "nia")}).json()
        assert stored["assignments"][0]["closes_at"] == "2099-01-01T14:00:00Z"

        joiner = learner.new_page()
        joiner.goto(invite)
        joiner.get_by_label("Your sign-in key or API key").fill(
            web_platform.learner_key("acme", "kai"))
        joiner.get_by_role("button", name="Sign in with API key or sign-in key").click()
        joiner.get_by_role("button", name="Join Zones 101").click()
        expect(joiner.locator("#assignments")).to_contain_text(
            "due 2099-01-01 23:00 (Asia/Tokyo)")
        # A window set through the API to the second (half a minute): its ends read apart,
        # in Tokyo time (they read "23:00 … 23:00", seconds dropped).
        changed = web_platform.client().patch(
            f"/v1/cohorts/{cohort.group(1)}/assignments/"
            f"{stored['assignments'][0]['assignment_id']}",
            headers={"x-api-key": web_platform.learner_key("acme", "nia")},
            json={"opens_at": "2098-12-31T14:00:15Z", "closes_at": "2098-12-31T14:00:45Z"})
        assert changed.status_code == 200, changed.text
        joiner.reload()
        expect(joiner.locator("#assignments")).to_contain_text(
            "opens 2098-12-31 23:00:15, due 2098-12-31 23:00:45 (Asia/Tokyo)")
        # Started before it opens: the refusal says when, in Tokyo time too, to the second.
        joiner.get_by_role("button", name="Start this lab: Find the server").click()
        expect(joiner.locator("p.error")).to_contain_text(
            "it opens on 2098-12-31 23:00:15 Asia/Tokyo.")
        joiner.go_back()
        # More time for Kai, typed in New York time too (an optional field left empty
        # elsewhere on the page changes nothing).
        give_more_time(page, url, "kai", "America/New_York", "2099-01-08T09:00",
                       "2099-01-08 09:00 (America/New_York)")  # 14:00 UTC, told locally
        joiner.reload()
        expect(joiner.locator("#assignments")).to_contain_text("2099-01-08 23:00")
        # The class dashboard names Kai's own due time in New York time too.
        page.goto(f"{url}/teach/cohorts/{cohort.group(1)}")
        expect(page.locator(".due-extended")).to_have_text(
            "(due 2099-01-08 09:00 America/New_York)")
    finally:
        teacher.close()
        learner.close()


def _terminal_view(page: Page) -> dict[str, int]:
    """The shown terminal's first line in view (`top`), its latest page (`base`), and how
    far the page is scrolled."""
    return page.evaluate("""() => {
        const t = document.querySelector(".term-panel:not([hidden])").forgeTerminal;
        const b = t.term.buffer.active;
        return {top: b.viewportY, base: b.baseY, page: Math.round(window.scrollY)};
    }""")


def _swipe(page: Page, target: Locator, dy: float) -> None:
    """A finger put on `target` and moved `dy` CSS pixels down (up when negative), as real
    touch events (Chrome's input domain)."""
    box, screen = target.bounding_box(), page.viewport_size
    assert box is not None and screen is not None
    x = box["x"] + box["width"] / 2
    y = max(box["y"], 0) + 40
    assert y + max(dy, 0) < screen["height"], (box, dy)
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("Input.dispatchTouchEvent",
                 {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for step in range(1, 11):
            cdp.send("Input.dispatchTouchEvent",
                     {"type": "touchMove", "touchPoints": [{"x": x, "y": y + dy * step / 10}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()


@pytest.mark.root
def test_a_learner_on_a_phone_sends_ctrl_esc_tab_arrows_pastes_and_copies_with_the_key_bar(
    web_platform: WebPlatform, browser: Browser
) -> None:
    """A phone keyboard has no Ctrl, Esc, Tab or arrows: before, a learner on a phone who
    ran `ping` could never stop it (probe BA). On a touch screen the lab page shows a key
    bar; its keys reach the shown terminal as the bytes a keyboard sends (read in raw
    mode here), and Ctrl applies to the next letter typed.
    Chromium emulating a phone (390 px, touch); the desktop page shows no bar."""
    key = web_platform.learner_key("academy", "pia")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                has_touch=True)
    try:
        page = phone.new_page()
        page.goto(web_platform.url + "/signin")
        assert_finger_sized(page.get_by_label("API key"))
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in with API key").tap()
        page.get_by_role("button", name="Start this lab: Static routing between two LANs").tap()
        expect(page.locator("#state")).to_have_text("running", timeout=60_000)
        expect(page.locator("#term-status")).to_have_text("Connected to the learner host.",
                                                          timeout=20_000)
        bar = page.get_by_role("toolbar", name="Keys a phone keyboard lacks")
        expect(bar).to_be_visible()
        # On a phone the status card comes before the terminal: one tap at the top of the
        # page leads to it (review CC: it started screens down). Then a link leads to the
        # task and back.
        page.evaluate("window.scrollTo(0, 0)")
        page.get_by_role("link", name="Go to the terminal").tap()
        expect(page.locator("#term-h")).to_be_in_viewport()
        page.get_by_role("link", name="Task and hints").tap()
        expect(page.locator("#task")).to_be_in_viewport()
        page.get_by_role("link", name="Back to the terminal").tap()
        expect(page.locator("#term-h")).to_be_in_viewport()
        # Sized for a finger: the controls, and the links that stand alone (the header's,
        # Sign out drawn as a link, the jumps): before, those were a line of text, 18-23 px.
        site = page.get_by_role("navigation", name="Site")
        assert_finger_sized(page.get_by_role("button", name="Submit for grading"),
                             page.get_by_role("button", name="Full screen"),
                             site.get_by_role("link", name="Your account"),
                             site.get_by_role("button", name="Sign out"),
                             page.get_by_role("link", name="Go to the terminal"),
                             page.get_by_role("link", name="Task and hints"),
                             page.get_by_role("link", name="Back to the terminal"))
        expect(page.locator("#term-help-touch")).to_be_visible()
        rows = page.locator("#terminal .xterm-rows")
        page.locator("#terminal").tap()

        # What each key sends, as the shell's program reads it: the terminal in raw mode
        # (no line editing, no signals), 7 bytes read and shown in hex.
        page.keyboard.insert_text(
            "stty raw -echo; echo ready-$((1+2)); head -c 7 | od -An -tx1; stty sane")
        page.keyboard.press("Enter")
        expect(rows).to_contain_text("ready-3", timeout=20_000)
        for name in ("Ctrl-C", "Esc", "Tab"):
            bar.get_by_role("button", name=name, exact=True).tap()
        ctrl = bar.get_by_role("button", name="Ctrl", exact=True)
        ctrl.tap()
        expect(ctrl).to_have_attribute("aria-pressed", "true")
        page.keyboard.insert_text("d")  # Ctrl, then d: EOT, and Ctrl lets go
        expect(ctrl).to_have_attribute("aria-pressed", "false")
        bar.get_by_role("button", name="Up arrow").tap()  # ESC [ A (or ESC O A)
        expect(rows).to_contain_text(re.compile(r"03 1b 09 04 1b (5b|4f) 41"),
                                     timeout=20_000)
        # Paste: a terminal has no field to press and hold. Without the clipboard's
        # permission a field opens to paste into; with it, the copied text goes straight in.
        page.keyboard.insert_text("clear")
        page.keyboard.press("Enter")
        bar.get_by_role("button", name="Paste", exact=True).tap()
        field = page.get_by_label("Paste here")
        expect(field).to_be_focused(timeout=10_000)
        field.fill("echo pasted-$((40+2))")
        page.get_by_role("button", name="Send to the terminal").tap()
        expect(page.locator("#paste-box")).to_be_hidden()
        expect(rows).to_contain_text("echo pasted-$((40+2))", timeout=20_000)
        page.keyboard.press("Enter")
        expect(rows).to_contain_text("pasted-42", timeout=20_000)
        phone.grant_permissions(["clipboard-read", "clipboard-write"],
                                origin=web_platform.url)
        page.evaluate("navigator.clipboard.writeText('echo copied-$((50+1))')")
        bar.get_by_role("button", name="Paste", exact=True).tap()
        expect(rows).to_contain_text("echo copied-$((50+1))", timeout=20_000)  # in, not run
        page.keyboard.press("Enter")
        expect(rows).to_contain_text("copied-51", timeout=20_000)
        expect(page.locator("#paste-box")).to_be_hidden()
        # Copy: a finger cannot select in the terminal (a swipe scrolls it), and the bar
        # had no Copy. It shows the terminal's text to select from, or copies it all.
        bar.get_by_role("button", name="Copy", exact=True).tap()
        copy_box = page.locator("#copy-box")
        expect(copy_box.get_by_label("The terminal's text")).to_have_value(
            re.compile(r"^copied-51$", re.MULTILINE))
        copy_box.get_by_role("button", name="Copy all").tap()
        expect(copy_box.get_by_role("status")).to_have_text("Copied to the clipboard.")
        assert "\ncopied-51" in page.evaluate("navigator.clipboard.readText()")
        copy_box.get_by_role("button", name="Close").tap()
        expect(copy_box).to_be_hidden()
        # The key bar is in sight while the terminal is: held at the bottom of the screen
        # (here with the terminal's last row at the bottom, the bar's place was below it).
        page.locator("#terminal").evaluate("el => el.scrollIntoView({block: 'end'})")
        bar_box, screen = bar.bounding_box(), page.viewport_size
        assert bar_box is not None and screen is not None
        assert bar_box["y"] + bar_box["height"] <= screen["height"] + 1, bar_box

        # Earlier output is in reach of a finger (CC): a swipe down over the terminal
        # scrolls its output back, where it moved the page and the output was lost.
        page.keyboard.insert_text("clear; seq 1 200; echo seq-done-$((1+1))")
        page.keyboard.press("Enter")
        expect(rows).to_contain_text("seq-done-2", timeout=20_000)
        before = _terminal_view(page)
        assert before["top"] == before["base"] > 100, before
        _swipe(page, page.locator("#terminal"), 300)
        after = _terminal_view(page)
        assert after["top"] <= before["top"] - 5, (before, after)
        assert after["page"] == before["page"], (before, after)  # the page stayed put

        # With the phone's keyboard open (the page resized for it), the line being typed
        # is in sight above the key bar (CC: it was under the bar).
        page.set_viewport_size({"width": 390, "height": 374})
        page.locator("#terminal").tap()
        page.keyboard.insert_text("echo z9")  # short: the prompt's row does not wrap
        typed = page.locator("#terminal .xterm-rows > div").filter(has_text="echo z9").last
        end = time.monotonic() + 20
        while True:
            row, bar_box = typed.bounding_box(), bar.bounding_box()
            assert row is not None and bar_box is not None
            if row["y"] + row["height"] <= bar_box["y"] + 1 and row["y"] >= 0:
                break
            assert time.monotonic() < end, (row, bar_box)
            time.sleep(0.1)
        page.keyboard.press("Control+U")  # the line is not run
        page.set_viewport_size({"width": 390, "height": 844})
        lab_url = page.url.split("#")[0]

        # Signed out while the page is open (the session cookie ran out): the terminal
        # still works, so the page says so itself, and the link leads back to this lab.
        phone.clear_cookies()
        signed_out = page.locator("#signed-out")
        expect(signed_out).to_be_visible(timeout=20_000)
        expect(signed_out).to_contain_text("Your lab keeps running.")
        # Seen from the terminal too, and the header no longer says "Signed in as" (CC).
        page.locator("#terminal").evaluate("el => el.scrollIntoView({block: 'end'})")
        expect(signed_out).to_be_in_viewport()
        expect(page.locator("header .who")).to_be_hidden()
        signed_out.get_by_role("link", name="Sign in again").tap()
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in with API key").tap()
        expect(page).to_have_url(lab_url, timeout=20_000)
        expect(page.locator("#state")).to_have_text("running")
        expect(page.locator("#signed-out")).to_be_hidden()
    finally:
        phone.close()
    desk = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = desk.new_page()
        page.goto(web_platform.url + "/signin")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in with API key").click()
        # Ctrl+V pastes, as in a desktop's terminals (CC: it sent ^V, and the next Enter
        # typed ^M instead of running the line).
        page.goto(lab_url)
        expect(page.locator("#term-status")).to_have_text("Connected to the learner host.",
                                                          timeout=20_000)
        desk.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_platform.url)
        page.evaluate("navigator.clipboard.writeText('echo ctrl-v-$((6*7))')")
        page.locator("#terminal").click()
        page.keyboard.press("Control+V")
        desk_rows = page.locator("#terminal .xterm-rows")
        expect(desk_rows).to_contain_text("echo ctrl-v-$((6*7))", timeout=20_000)
        page.keyboard.press("Enter")
        expect(desk_rows).to_contain_text("ctrl-v-42", timeout=20_000)
        page = desk.new_page()
        page.clock.install()  # the page's own timers: its countdown runs on this clock
        page.goto(lab_url)
        expect(page.locator("#term-status")).to_have_text("Connected to the learner host.",
                                                          timeout=20_000)
        expect(page.locator("#term-keys")).to_be_hidden()
        expect(page.get_by_role("link", name="Task and hints")).to_be_hidden()  # side by side
        expect(page.get_by_role("link", name="Go to the terminal")).to_be_hidden()
        # Near the end the page says so where the learner is (the timer may be scrolled
        # away): once at 10 minutes left, once at 2, and what happens then.
        warning = page.locator("#time-warning")
        expect(warning).to_be_hidden()
        ends = page.locator("#lab").get_attribute("data-expires")
        assert ends is not None
        left_ms = page.evaluate("(ends) => Date.parse(ends) - Date.now()", ends)
        for minutes in (10, 2):
            page.clock.fast_forward(int(left_ms - (minutes * 60 - 30) * 1000))
            left_ms = (minutes * 60 - 30) * 1000
            page.clock.run_for(1500)
            said = (f"Your lab ends in less than {minutes} min and is then graded as it stands. "
                    "Extend it, or submit when you are done.")
            expect(warning).to_have_text(said)
            # ...and above the terminal, which is in sight while the learner types in it
            # (CC: clicking into the terminal scrolled the status card away).
            page.locator("#terminal").click()
            expect(page.locator("#term-time-warning")).to_have_text(said)
            expect(page.locator("#term-time-warning")).to_be_in_viewport()
    finally:
        desk.close()
