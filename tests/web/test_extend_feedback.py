"""Extend says it extended the lab, where the learner pressed it (Playwright + Chromium, the
real platform).

After Extend the lab's page came again and its terminal took the keyboard focus: nothing
said the lab had been extended (only the countdown, out of sight of a screen reader, had
moved) and a keyboard user pressing Extend found themselves typing into the shell. The
page now says "Extended: your lab now ends in N min." in a status message that has the
focus; a reload does not say it again.

Extend and Submit pressed while the device is offline: both are form posts, and offline
each left the lab page for the browser's own "No internet" page, its terminal and countdown
gone, with nothing said about the lab (had it been submitted? extended?) and no way back but
the Back button. Offline, neither is sent: the page stays, says what did not happen and what
to do, and the keyboard focus stays on the button pressed. Online again, the same press
works.
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
def test_extend_offline_then_online_says_so_and_keeps_the_keyboard_focus(
        web_platform: WebPlatform, page: Page) -> None:
    """Offline, Extend and Submit send nothing and say so (the page stays); online again,
    Extend extends and says so where the learner pressed it."""
    sid = web_platform.start_lab(page, web_platform.learner_key("acme", "extend-said"))
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
    extend.focus()
    page.keyboard.press("Enter")

    said = page.get_by_role("status").filter(has_text="Extended")
    expect(said).to_have_text(re.compile(r"^Extended: your lab now ends in (19|20) min\.$"))
    expect(page.get_by_role("status").filter(has_text="offline")).to_have_count(0)
    expect(said).to_be_focused()
    expect(page.locator("#term-status")).to_have_text("Connected to the learner host.")
    expect(said).to_be_focused()  # the terminal, connected again, left the focus there
    expect(page).to_have_url(re.compile(rf".*/lab/{sid}$"))  # a reload says nothing again

    page.reload()
    expect(page.locator("#term-status")).to_have_text("Connected to the learner host.")
    expect(page.locator("#extend-done")).to_be_hidden()
    expect(page.get_by_role("textbox", name="Terminal input")).to_be_focused()


@pytest.mark.root
def test_extend_not_yet_open_is_reached_by_tab_and_says_why(web_platform: WebPlatform,
                                                           page: Page) -> None:
    """A fresh lab (over 10 minutes left): Extend was `disabled`, so Tab skipped it and a
    keyboard or screen-reader user never learnt it existed nor why it could not be pressed.
    It is now reached by Tab, read as unavailable with its reason, and a press sends nothing
    and says when it opens."""
    web_platform.start_lab(page, web_platform.learner_key("acme", "extend-why"))
    expect(page.locator("#term-status")).to_have_text("Connected to the learner host.")
    sent: list[str] = []
    page.on("request", lambda req: sent.append(req.url) if req.url.endswith("/extend") else None)
    submit = page.get_by_role("button", name="Submit for grading")
    submit.focus()
    page.keyboard.press("Shift+Tab")  # the control just before Submit
    extend = page.get_by_role("button", name="Extend by 15 min")
    expect(extend).to_be_focused()
    expect(extend).to_be_disabled()  # aria-disabled: announced as unavailable
    expect(extend).to_have_accessible_description(re.compile(r"Available in \d+ min"))
    page.keyboard.press("Enter")
    why = page.get_by_role("status").filter(has_text="Not yet")
    expect(why).to_have_text(re.compile(
        r"^Not yet: a lab can be extended only in its last 10 minutes, in \d+ min\.$"))
    expect(extend).to_be_focused()
    expect(page.locator("#state")).to_have_text("running")
    assert sent == []


LIVE_WRITES = """() => { window.__writes = 0;
  new MutationObserver(ms => { window.__writes += ms.length; }).observe(
    document.getElementById('extend-note'), {childList: true, characterData: true, subtree: true});
}"""


@pytest.mark.root
def test_extends_note_is_not_announced_each_minute(web_platform: WebPlatform,
                                                   page: Page) -> None:
    """Extend's note ("Available in 34 min (the last 10 minutes).") was a polite live region
    rewritten every second: a screen reader read it out again each minute of the lab, over
    whatever the learner was doing. It is Extend's description (read on focus), not a live
    region, and is written only when its text changes."""
    page.clock.install()
    web_platform.start_lab(page, web_platform.learner_key("acme", "extend-quiet"))
    note = page.locator("#extend-note")
    expect(note).to_contain_text(re.compile(r"Available in \d+ min"))
    assert note.evaluate("el => el.closest('[aria-live]')") is None
    page.evaluate(LIVE_WRITES)
    page.clock.run_for(5_000)  # five ticks of the countdown
    expect(page.locator("#remaining")).to_be_visible()
    assert page.evaluate("window.__writes") == 0
