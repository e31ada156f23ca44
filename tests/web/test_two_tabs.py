"""One lab open in two tabs (or on a laptop and a phone): what one learns, the other says
(Playwright + Chromium, the real platform).

The Submit dialog tells the learner what their hints cost before the lab is graded. It
counted only the hints revealed in its own tab: a hint that costs 10 % revealed on the
phone left the laptop's dialog saying "0 hints", and the learner submitted believing their
score untouched. The dialog now shows the server's count, kept current by the page's status
poll and by each reveal's answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .conftest import WebPlatform, running_web_platform

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


TWO_HINTS = "You have used 2 hints (\u221210 %)."  # the page's minus sign, U+2212


@pytest.fixture(scope="module")
def web_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    with running_web_platform(tmp_path_factory.mktemp("web-two-tabs")) as platform:
        yield platform


def _two_hints_in_another_tab(web_platform: WebPlatform, page: Page, subject: str) -> None:
    """A lab of `subject` started in `page`; in a second tab of it, hint 1 (free), then
    hint 2, which costs 10 % (asked, then confirmed)."""
    web_platform.start_lab(page, web_platform.learner_key("acme", subject))
    other = page.context.new_page()
    other.goto(page.url)
    expect(other.locator("#state")).to_have_text("running")
    other.get_by_role("button", name="Reveal hint 1").click()
    expect(other.locator("#hint-h1 .hint-text")).to_be_visible()
    other.get_by_role("button", name="Reveal hint 2").click()
    other.get_by_role("button", name="Yes, reveal hint 2").click()
    expect(other.locator("#hint-h2 .hint-text")).to_be_visible()


@pytest.mark.root
def test_the_submit_dialog_counts_hints_revealed_in_another_tab(
        web_platform: WebPlatform, page: Page) -> None:
    _two_hints_in_another_tab(web_platform, page, "two-tabs")

    # The first tab, opened before, says what Submit will cost.
    page.bring_to_front()
    page.get_by_role("button", name="Submit for grading").click()
    dialog = page.get_by_role("dialog", name="Submit this lab?")
    expect(dialog).to_contain_text(TWO_HINTS)
    dialog.get_by_role("button", name="Cancel, keep working").click()
    # Its own Reveal of a hint the other tab already revealed charges nothing more.
    page.get_by_role("button", name="Reveal hint 1").click()
    expect(page.locator("#hint-h1 .hint-text")).to_be_visible()
    page.get_by_role("button", name="Submit for grading").click()
    expect(dialog).to_contain_text(TWO_HINTS)


@pytest.mark.root
def test_a_hint_revealed_in_another_tab_is_shown_here_without_asking_its_cost(
        web_platform: WebPlatform, page: Page) -> None:
    """The other tab's Reveal button of a hint that costs score stayed as it was: pressed, it
    said "Hint 2 costs 10 % of the score. Press again to reveal it." although revealing it
    again charges nothing. The page's status poll now names the revealed hints, and their
    button here shows the text at the first press."""
    _two_hints_in_another_tab(web_platform, page, "two-tabs-stale")

    page.bring_to_front()
    show = page.get_by_role("button",
                            name="Reveal hint 2 here (revealed elsewhere: no further cost)")
    show.click()
    expect(page.locator("#hint-h2 .hint-text")).to_be_visible()
    expect(page.locator("#hint-h2 .hint-confirm")).to_have_text("")
    page.get_by_role("button", name="Submit for grading").click()
    expect(page.get_by_role("dialog", name="Submit this lab?")).to_contain_text(TWO_HINTS)
