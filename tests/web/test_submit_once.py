"""Submit and Extend pressed again while the platform has not answered yet (Playwright +
Chromium, the real platform).

After "Submit and end the lab" the Submit button read as before until the next page came
(seconds: the lab is handed in and grading starts), and a press of it then posted the form
again, past the dialog. It now reads "Submitting…" and a press sends nothing more.

Extend, pressed twice on a slow network, extended the lab once and then showed the second
post's refusal ("a lab can be extended only in its last 10 minutes"), as if it had failed.
It now reads "Extending…" and a second press sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, Route, expect

from forge.store.models import Scenario

from .conftest import WebPlatform, running_web_platform

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


@pytest.fixture(scope="module")
def web_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    with running_web_platform(tmp_path_factory.mktemp("web-submit")) as platform:
        yield platform


@pytest.mark.root
def test_a_confirmed_submit_says_so_and_a_second_press_sends_nothing(
        web_platform: WebPlatform, page: Page) -> None:
    web_platform.start_lab(page, web_platform.learner_key("acme", "submit-once"))
    sent: list[str] = []

    def no_answer_yet(route: Route) -> None:
        """The submit, answered with 204 (the browser stays on the page): the page as it
        is while the platform has not answered yet."""
        sent.append(route.request.method)
        route.fulfill(status=204)

    page.route("**/submit", no_answer_yet)
    submit = page.locator("#submit-button")
    submit.click()
    page.get_by_role("button", name="Submit and end the lab").click()
    expect(submit).to_have_text("Submitting…")
    expect(submit).to_have_attribute("aria-disabled", "true")
    expect(submit).to_be_focused()
    # Pressed again, with the mouse (Playwright's click waits for an enabled button) and
    # with the keyboard: neither the dialog nor a second post.
    box = submit.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.get_by_role("dialog", name="Submit this lab?")).to_be_hidden()
    assert sent == ["POST"]


@pytest.mark.root
def test_extend_pressed_twice_sends_one_request(web_platform: WebPlatform, page: Page) -> None:
    sid = web_platform.start_lab(page, web_platform.learner_key("acme", "extend-once"))
    with web_platform.db.session() as sess:  # its last 10 minutes: Extend is open
        row = sess.get(Scenario, sid)
        assert row is not None
        row.expires_at = datetime.now(UTC) + timedelta(minutes=5)
    page.reload()
    sent: list[str] = []

    def no_answer_yet(route: Route) -> None:
        sent.append(route.request.method)
        route.fulfill(status=204)

    page.route("**/extend", no_answer_yet)
    extend = page.locator("#extend-button")
    extend.click()
    expect(extend).to_have_text("Extending…")
    expect(extend).to_have_attribute("aria-disabled", "true")
    expect(extend).to_be_focused()
    # The page's countdown ticks (it sets Extend's state each second): still busy.
    remaining = page.locator("#remaining")
    before = remaining.text_content()
    expect(remaining).not_to_have_text(before or "")
    expect(extend).to_have_attribute("aria-disabled", "true")
    box = extend.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert sent == ["POST"]
