"""A hint pressed before the hint it follows (Playwright + Chromium, the real platform).

Hints for one task open in order. Hint 2 of netplus costs 10 %: pressed before hint 1, the
page asked the learner to confirm the cost ("Press again to reveal it"), then said "Reveal
hint 1 first", and the button went on reading "Yes, reveal hint 2 …" for 15 s. The page now
says why at the first press, before any cost is asked, and a refused reveal leaves the
button as it was.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from .conftest import WebPlatform

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store

PAID = "Reveal hint 2 (costs 10 % of the score)"


@pytest.mark.root
def test_a_hint_pressed_out_of_order_says_why_before_asking_its_cost(
        web_platform: WebPlatform, page: Page) -> None:
    web_platform.start_lab(page, web_platform.learner_key("acme", "hint-order"))
    hint2 = page.locator("#hint-h2")
    page.get_by_role("button", name=PAID).click()
    expect(hint2.get_by_role("alert")).to_have_text(
        "Reveal hint 1 first (hints for a task open in order). Nothing was charged.")
    expect(hint2.locator(".hint-confirm")).to_have_text("")
    expect(page.get_by_role("button", name=PAID)).to_be_visible()  # not "Yes, reveal …"

    # In order, hint 2 asks its cost (the message gone) and is revealed once confirmed.
    page.get_by_role("button", name="Reveal hint 1").click()
    expect(page.locator("#hint-h1 .hint-text")).to_be_visible()
    page.get_by_role("button", name=PAID).click()
    expect(hint2.locator(".hint-confirm")).to_have_text(
        "Hint 2 costs 10 % of the score. Press again to reveal it.")
    expect(hint2.locator(".hint-error")).to_be_hidden()
    page.get_by_role("button", name="Yes, r" + PAID[1:]).click()
    expect(hint2.locator(".hint-text")).to_contain_text("/dev/tcp")


@pytest.mark.root
def test_a_refused_reveal_takes_the_question_back(web_platform: WebPlatform,
                                                  page: Page) -> None:
    """The server refuses the confirmed reveal (here: the learner was signed out meanwhile):
    the page says why and the button reads as before, asking again at its next press."""
    web_platform.start_lab(page, web_platform.learner_key("acme", "hint-refused"))
    page.get_by_role("button", name="Reveal hint 1").click()
    expect(page.locator("#hint-h1 .hint-text")).to_be_visible()

    hint2 = page.locator("#hint-h2")
    page.get_by_role("button", name=PAID).click()
    page.context.clear_cookies()  # signed out, in another tab or by the session's end
    page.get_by_role("button", name="Yes, r" + PAID[1:]).click()
    expect(hint2.get_by_role("alert")).to_contain_text("Sign in again")
    expect(page.get_by_role("button", name=PAID)).to_be_visible()
    expect(hint2.locator(".hint-confirm")).to_have_text("")
    page.get_by_role("button", name=PAID).click()  # asks again, reveals nothing
    expect(hint2.locator(".hint-confirm")).to_have_text(
        "Hint 2 costs 10 % of the score. Press again to reveal it.")
    expect(hint2.locator(".hint-text")).to_be_hidden()


@pytest.mark.root
def test_a_question_asked_again_gets_its_whole_time(web_platform: WebPlatform,
                                                    page: Page) -> None:
    """Asked again after a refused reveal, the question lasts CONFIRM_MS (15 s) from the
    new press: the first question's timer, still running, took the new one back when the
    first's time was up (here 6 s into the second), so the confirming press only asked
    again. The page's own timers run on Playwright's clock."""
    page.clock.install()
    web_platform.start_lab(page, web_platform.learner_key("acme", "hint-again"))
    page.get_by_role("button", name="Reveal hint 1").click()
    expect(page.locator("#hint-h1 .hint-text")).to_be_visible()

    hint2 = page.locator("#hint-h2")
    page.get_by_role("button", name=PAID).click()  # the first question
    page.context.clear_cookies()
    page.get_by_role("button", name="Yes, r" + PAID[1:]).click()
    expect(hint2.get_by_role("alert")).to_contain_text("Sign in again")
    page.clock.fast_forward(10_000)
    page.get_by_role("button", name=PAID).click()  # asked again, 10 s after the first
    expect(hint2.locator(".hint-confirm")).to_have_text(
        "Hint 2 costs 10 % of the score. Press again to reveal it.")
    page.clock.fast_forward(6_000)  # the first question's 15 s are up, not the second's
    expect(hint2.locator(".hint-confirm")).to_have_text(
        "Hint 2 costs 10 % of the score. Press again to reveal it.")
    expect(page.get_by_role("button", name="Yes, r" + PAID[1:])).to_be_visible()
    page.clock.fast_forward(10_000)  # the second's are up too: taken back
    expect(hint2.locator(".hint-confirm")).to_have_text("")
    expect(page.get_by_role("button", name=PAID)).to_be_visible()


@pytest.mark.root
def test_a_reveal_says_revealing_while_its_request_runs(web_platform: WebPlatform,
                                                        page: Page) -> None:
    """On a slow network a pressed Reveal looked as before until the answer came: nothing
    said the press was taken. The button and the hint's status now say "Revealing…"; the
    text comes when the answer does, and a failed request gives the label back."""
    web_platform.start_lab(page, web_platform.learner_key("acme", "hint-slow"))
    held: list[Route] = []

    def hold(route: Route) -> None:  # the request waits here
        held.append(route)

    page.route("**/hints/h1", hold)
    button = page.get_by_role("button", name="Reveal hint 1")
    button.click()
    hint1 = page.locator("#hint-h1")
    expect(hint1.get_by_role("button")).to_have_text("Revealing…")
    expect(hint1.get_by_role("status")).to_have_text("Revealing hint 1…")
    expect(hint1.get_by_role("button")).to_be_focused()
    assert len(held) == 1
    held[0].abort()  # the connection drops
    expect(hint1.get_by_role("alert")).to_have_text(
        "The hint could not be revealed (connection problem). Try again.")
    expect(button).to_be_visible()  # its label back
    expect(hint1.get_by_role("status")).to_have_text("")
    page.unroute("**/hints/h1")
    button.click()
    expect(hint1.locator(".hint-text")).to_contain_text("ip -4 route")
    expect(hint1.get_by_role("status")).to_have_text("")
