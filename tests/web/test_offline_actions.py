"""Extend and Submit pressed while the device is offline (Playwright + Chromium, the real
platform).

Both are form posts: offline, each left the lab page for the browser's own "No internet"
page, its terminal and countdown gone, with nothing said about the lab (had it been
submitted? extended?) and no way back but the Back button. Offline, neither is sent: the
page stays, says what did not happen and what to do, and the keyboard focus stays on the
button pressed. Online again, the same press works.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from forge.store.models import Scenario

from .conftest import WebPlatform

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


@pytest.mark.root
def test_extend_and_submit_offline_keep_the_lab_page_and_say_so(web_platform: WebPlatform,
                                                                page: Page) -> None:
    sid = web_platform.start_lab(page, web_platform.learner_key("acme", "offline-press"))
    with web_platform.db.session() as sess:  # its last 10 minutes: Extend is open
        row = sess.get(Scenario, sid)
        assert row is not None
        row.expires_at = datetime.now(UTC) + timedelta(minutes=5)
    page.reload()
    expect(page.locator("#term-status")).to_have_text("Connected to the learner host.")
    lab_url = page.url

    page.context.set_offline(True)
    extend = page.get_by_role("button", name="Extend by 15 min")
    extend.click()
    expect(page.get_by_role("status").filter(has_text="offline")).to_have_text(
        "You are offline: the lab was not extended. Press Extend again once you are back "
        "online.")
    expect(extend).to_be_focused()

    submit = page.get_by_role("button", name="Submit for grading")
    submit.click()
    page.get_by_role("dialog", name="Submit this lab?").get_by_role(
        "button", name="Submit and end the lab").click()
    expect(page.get_by_role("alert").filter(has_text="offline")).to_have_text(
        "You are offline: nothing was submitted and your lab keeps running. Press Submit "
        "again once you are back online.")
    expect(submit).to_be_focused()
    expect(submit).to_have_text("Submit for grading")
    assert page.url == lab_url
    expect(page.locator("#state")).to_have_text("running")

    page.context.set_offline(False)
    extend.click()
    expect(page.get_by_role("status").filter(has_text="Extended")).to_have_text(
        re.compile(r"^Extended: your lab now ends in (19|20) min\.$"))
    expect(page.get_by_role("status").filter(has_text="offline")).to_have_count(0)
