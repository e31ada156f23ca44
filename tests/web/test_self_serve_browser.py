"""A new learner in Chromium, from nothing: /plans → choose → the stand-in gateway's test
payment → signed in on /tracks with a Start button (no token pasted, none in any URL) →
the personal sign-in key saved from the account page → sign out → "Continue with your
purchase" → the labs again, and the saved key signs in from a fresh browser → a running lab. Then every learner page and the operator pages, at 360x740: no sideways
scroll (`document.documentElement.scrollWidth <= 360`), an axe-core scan with no serious
or critical violation, and (learner pages) no jargon word of tests/web/test_human_pages.py. With $FORGE_DOCS_IMAGES set (scripts/screenshots.py) each page is
also saved at 1280 and 390 px wide for the README."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import OPERATOR_TOKEN, WebPlatform, docs_images, running_web_platform
from .test_human_pages import JARGON

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
LAB_URL = re.compile(r".*/lab/(scn-[0-9a-f]{16})$")
NARROW = {"width": 360, "height": 740}
SHOT_WIDTHS = (1280, 390)
SERIOUS = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"], runOnly: {
    type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
  return result.violations.filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => v.id + ": " + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "));
}"""


@pytest.fixture(scope="module")
def dev_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    """The whole platform in dev with BILLING_MODE=stub (the stand-in payment gateway)."""
    with running_web_platform(tmp_path_factory.mktemp("selfserve"), FORGE_ENV="dev",
                              BILLING_MODE="stub") as platform:
        yield platform


def check_pages(browser: Browser, state: object, urls: dict[str, str],
                problems: list[str]) -> None:
    """Open each page at 360x740 (signed in as `state`): no sideways scroll, axe clean; and
    save the README screenshots when asked to."""
    context = browser.new_context(viewport=NARROW, storage_state=state,  # type: ignore[arg-type]
                                  bypass_csp=True)  # so the test can add axe, never the app
    try:
        page = context.new_page()
        for name, url in urls.items():
            page.set_viewport_size(NARROW)
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > NARROW["width"]:
                problems.append(f"{name}: {width} px wide at 360")
            if not name.startswith("ops"):  # operators may read service names
                words = page.inner_text("body").lower()
                problems.extend(f"{name}: says {w!r}" for w in JARGON if w in words)
            page.add_script_tag(path=str(AXE))
            problems.extend(f"{name}: {v}" for v in page.evaluate(SERIOUS))
            if (images := docs_images()) is not None:
                for wide in SHOT_WIDTHS:
                    page.set_viewport_size({"width": wide, "height": 900})
                    page.screenshot(path=str(images / f"{name}-{wide}.png"))
    finally:
        context.close()


def save_the_sign_in_key(page: Page, url: str) -> str:
    """After checkout: the notice leads to the account page, which shows the personal
    sign-in key once and saves it as a text file; a reload no longer shows it."""
    page.get_by_role("link", name="Show it and save it").click()
    expect(page).to_have_url(url + "/account")
    expect(page.get_by_text("shown only this once")).to_be_visible()
    key = page.get_by_role("textbox", name="Sign-in key").input_value()
    assert re.fullmatch(r"fgk_[0-9a-f]{16}_[A-Za-z0-9_-]{32,64}", key)
    with page.expect_download() as saved:
        page.get_by_role("button", name="Download as a text file").click()
    assert key in Path(saved.value.path()).read_text(encoding="utf-8")
    page.reload()
    expect(page.get_by_role("button", name="Make a new sign-in key")).to_be_visible()
    assert key not in page.content()
    return key


@pytest.mark.root
def test_buy_start_and_every_page_fits_a_phone_and_passes_axe(
        dev_platform: WebPlatform, page: Page, browser: Browser) -> None:
    url = dev_platform.url
    pages: dict[str, str] = {"signin": url + "/signin", "plans": url + "/plans",
                             "error-404": url + "/no/such/page",
                             "access-link-error": url + "/v1/access/scn-0123456789abcdef?token=x"}
    anonymous = page.context.storage_state()

    # A fresh browser: sign-in page → plans → test payment → signed in on /tracks.
    page.goto(url + "/")
    expect(page).to_have_url(url + "/signin")
    page.get_by_role("link", name="Choose a plan").click()
    expect(page).to_have_url(url + "/plans")
    expect(page.locator("#stub-note")).to_contain_text("No card is charged")
    page.get_by_role("button", name="Choose Pro").click()
    expect(page.get_by_role("heading", name="Pay for the Pro plan")).to_be_visible()
    page.get_by_role("button", name="Complete test payment").click()
    expect(page).to_have_url(url + "/tracks")
    expect(page.get_by_text("plan PRO")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    start = page.get_by_role("button", name="Start netplus lab")
    expect(start).to_be_visible()
    history = page.evaluate("performance.getEntriesByType('navigation').map(e => e.name)")
    assert not any("token" in entry or "checkout=" in entry for entry in [page.url, *history])
    pages["tracks"] = url + "/tracks"
    key = save_the_sign_in_key(page, url)

    # Back in later, same browser: sign out, "Continue with your purchase", on to the labs.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(url + "/signin")
    page.get_by_role("button", name="Continue with your purchase").click()
    expect(page).to_have_url(url + "/tracks")
    expect(page.get_by_text("plan PRO")).to_be_visible()
    # Another device (a fresh browser context): the saved key signs in, the plan is there.
    other = browser.new_context()
    try:
        fresh = other.new_page()
        fresh.goto(url + "/signin")
        fresh.get_by_label("Your sign-in key or API key").fill(key)
        fresh.get_by_role("button", name="Sign in with API key").click()
        expect(fresh).to_have_url(url + "/tracks")
        expect(fresh.get_by_text("plan PRO")).to_be_visible()
    finally:
        other.close()

    start.click()
    expect(page).to_have_url(LAB_URL)
    found = LAB_URL.match(page.url)
    assert found is not None
    sid = found.group(1)
    expect(page.locator("#state")).to_have_text("running", timeout=60_000)
    expect(page.get_by_role("button", name="Extend by 15 min")).to_be_disabled()
    expect(page.locator("#extend-note")).to_contain_text("Up to 180 min in all on your plan")
    pages["lab"] = page.url
    learner = page.context.storage_state()
    problems: list[str] = []
    check_pages(browser, anonymous, {name: pages[name] for name in (
        "signin", "plans", "error-404", "access-link-error")}, problems)
    check_pages(browser, learner, {"lab": pages["lab"], "account": url + "/account"},
                problems)  # lab running: terminal shown

    # Hand the lab in; its result page gets the same checks.
    # (a form post, as the Submit button makes it; the button's own dialog is not tested here)
    csrf = page.locator("input[name=csrf]").first.input_value()
    handed = page.request.post(f"{url}/lab/{sid}/submit", form={"csrf": csrf, "confirm": "yes"},
                               headers={"origin": url}, max_redirects=0)
    assert handed.status == 303
    page.goto(f"{url}/lab/{sid}")
    expect(page.locator("#score-value")).to_be_visible(timeout=120_000)
    pages["result"] = f"{url}/lab/{sid}/result"
    check_pages(browser, learner, {name: pages[name] for name in ("tracks", "result")},
                problems)

    # The operator pages too.
    page.goto(url + "/ops/signin")
    page.get_by_label("Operator token").fill(OPERATOR_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url + "/ops")
    check_pages(browser, anonymous, {"ops-signin": url + "/ops/signin"}, problems)
    check_pages(browser, page.context.storage_state(), {"ops": url + "/ops"}, problems)
    assert problems == [], "\n".join(problems)
