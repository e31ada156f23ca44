"""A result file downloaded after the session ended (Playwright + Chromium, the real spawn
app reading a real scoreboard).

The lab page's download links carried the `download` attribute: signed out, the file's
address answered with a redirect to the sign-in page, which Chromium turned into a download
it cancelled at once. The page stayed as it was and said nothing; the learner was left with a
failed download and no hint that signing in again was the way on. The links are now plain
links (the server's Content-Disposition saves the file): signed out, the learner is shown the
sign-in form, which leads back to the lab's page with the downloads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from forge.identity.apikeys import create_api_key
from forge.services.spawn.app import build_app

from ..live_server import live_server
from .conftest import WebPlatform
from .journey import assert_finger_sized
from .test_result_page import Graded, graded  # noqa: F401 (the fixture)

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


def test_a_download_after_the_session_ended_leads_to_sign_in_and_back(
        graded: Graded, browser: Browser) -> None:  # noqa: F811 (the fixture)
    sid = graded.done.scenario_id
    db = graded.client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    key = create_api_key(db, "acme", "alice").plaintext
    with live_server(build_app(graded.settings)) as url:
        context = browser.new_context(accept_downloads=True,
                                      viewport={"width": 390, "height": 844},
                                      has_touch=True, is_mobile=True)
        try:
            page = context.new_page()
            page.goto(url + "/signin")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in with API key").click()
            page.goto(f"{url}/lab/{sid}")
            expect(page.get_by_role("link", name="score.json")).to_be_visible()
            # The way on and the files are links alone on their lines: sized for a finger
            # (they were 18 px tall, the four files 18 px apart).
            assert_finger_sized(page.get_by_role("link", name="score.json"),
                                page.get_by_role("link", name="verdict.pub"),
                                page.get_by_role("link", name="Start this lab again"),
                                page.get_by_role("link", name="Link to this result"))

            context.clear_cookies()  # the session ran out while the page was open
            page.get_by_role("link", name="score.json").click()
            expect(page).to_have_url(re.compile(rf".*/signin\?next=/lab/{sid}$"))
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in with API key").click()
            expect(page).to_have_url(f"{url}/lab/{sid}")

            with page.expect_download() as saved:
                page.get_by_role("link", name="score.json").click()
            assert saved.value.suggested_filename == "score.json"
            body = Path(saved.value.path()).read_bytes()
            assert body == graded.client.get(f"/lab/{sid}/artifacts/score.json").content

            # An error page's way on is sized for a finger too (Go back was 18 px tall).
            page.goto(f"{url}/lab/scn-0000000000000000")
            expect(page.get_by_role("heading", name="Not found")).to_be_visible()
            assert_finger_sized(page.get_by_role("link", name="Go back"))
        finally:
            context.close()


@pytest.mark.root
def test_a_recording_downloaded_after_the_session_ended_leads_back_to_the_result(
        web_platform: WebPlatform, page: Page, browser: Browser) -> None:
    """The same for a terminal recording, offered on the lab's result page."""
    key = web_platform.learner_key("acme", "recording-signed-out")
    sid = web_platform.start_lab(page, key)
    expect(page.locator("#term-status")).to_have_text("Connected to the learner host.")
    page.locator("#terminal").click()
    page.keyboard.type("echo recorded\n")
    expect(page.locator("#terminal .xterm-rows")).to_contain_text("recorded")
    page.get_by_role("button", name="Submit for grading").click()
    page.get_by_role("button", name="Submit and end the lab").click()
    expect(page.locator("#verification")).to_be_visible(timeout=90_000)
    page.goto(f"{web_platform.url}/lab/{sid}/result")
    download = page.locator("#recordings").get_by_role("link", name="download").first
    expect(download).to_be_visible()

    page.context.clear_cookies()
    download.click()
    expect(page).to_have_url(re.compile(rf".*/signin\?next=/lab/{sid}/result$"))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in with API key").click()
    expect(page).to_have_url(f"{web_platform.url}/lab/{sid}/result")
    with page.expect_download() as saved:
        page.locator("#recordings").get_by_role("link", name="download").first.click()
    assert saved.value.suggested_filename.endswith(".cast")

    # On a phone the recording's download link and the player's buttons are finger-sized:
    # they were a line of text (18 px) and the vendored player's 32 px icons.
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        small = phone.new_page()
        small.goto(f"{web_platform.url}/signin?next=/lab/{sid}/result")
        small.get_by_label("API key").fill(key)
        small.get_by_role("button", name="Sign in with API key").tap()
        expect(small).to_have_url(f"{web_platform.url}/lab/{sid}/result")
        recording = small.locator("#recordings figure").first
        player = recording.locator(".ap-control-bar")
        expect(player.get_by_role("button", name="Play")).to_be_attached()
        recording.locator(".ap-player").tap()  # a tap shows the player's controls
        assert_finger_sized(recording.get_by_role("link", name="Download learner."),
                            player.get_by_role("button", name="Play"),
                            player.get_by_role("button", name="Show keyboard shortcuts"),
                            player.get_by_role("button", name="Toggle fullscreen mode"))
        for button in player.get_by_role("button").all():
            box = button.bounding_box()
            assert box is not None and box["width"] >= 44, box
        # The player is as wide as the card's text (a figure's 40 px margins narrowed it).
        shown, text = (recording.locator(".ap-player").bounding_box(),
                       small.locator("#recordings-h").bounding_box())
        assert shown is not None and text is not None
        assert shown["x"] <= text["x"] + 1, (shown, text)
    finally:
        phone.close()
