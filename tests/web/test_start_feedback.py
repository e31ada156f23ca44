"""Start on the lab list while the lab is being created (Playwright + Chromium, the real
platform).

A press of Start showed nothing until the lab's page arrived (seconds on a busy platform or
a slow network): the button looked the same, so a newcomer pressed it again, which sent the
form again and threw away the first request's answer. The press now says at once that the
lab is starting, and further presses send nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Route, expect

from .conftest import LAB_URL, WebPlatform, running_web_platform

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


@pytest.fixture(scope="module")
def web_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    with running_web_platform(tmp_path_factory.mktemp("web-start")) as platform:
        yield platform


@pytest.mark.root
def test_start_says_it_is_starting_and_a_second_press_sends_nothing(
        web_platform: WebPlatform, page: Page) -> None:
    page.goto(web_platform.url + "/signin")
    page.get_by_label("API key").fill(web_platform.learner_key("acme", "start-twice"))
    page.get_by_role("button", name="Sign in with API key").click()
    sent: list[str] = []

    def no_answer_yet(route: Route) -> None:
        """The start request, answered with 204 (the browser stays on the page): the page
        as it is while a slow platform or network has not answered yet."""
        sent.append(route.request.method)
        route.fulfill(status=204)

    page.route("**/spawn", no_answer_yet)
    start = page.get_by_role("button", name="Start this lab: Find the server")
    start.click()
    expect(start).to_have_text("Starting…")
    expect(start).to_have_attribute("aria-disabled", "true")
    expect(start).not_to_have_attribute("disabled", "")  # busy, not disabled: the
    expect(start).to_be_focused()  # keyboard stays on it
    card = page.locator("li.card", has=start)
    expect(card.get_by_role("status")).to_have_text(
        "Starting your lab… Its page opens by itself in a few seconds.")
    # Pressed again, with the mouse (Playwright's click waits for an enabled button) and
    # with the keyboard: nothing more is sent.
    box = start.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert sent == ["POST"]

    # The platform answering: the lab's page.
    page.unroute("**/spawn")
    page.reload()
    page.get_by_role("button", name="Start this lab: Find the server").click()
    expect(page).to_have_url(LAB_URL)
