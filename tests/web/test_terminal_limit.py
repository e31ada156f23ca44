"""The lab page tells the learner why a terminal is refused (Playwright + Debian's Chromium).

A lab has at most its plan's `max_terminals` (PRO: 4) terminals open across every tab and
device; the page that asks for one more shows the refusal in the page, not a bare
"disconnected", and a terminal opens again once one of the others is closed.
"""

from __future__ import annotations

import re
from contextlib import ExitStack

import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from .conftest import WebPlatform

LAB_URL = re.compile(r".*/lab/(scn-[0-9a-f]{16})$")
CONNECTED = "Connected to the learner host."


@pytest.mark.root
def test_the_page_shows_why_a_terminal_past_the_cap_is_refused(
    web_platform: WebPlatform, page: Page
) -> None:
    key = web_platform.learner_key("acme", "tabby")
    page.goto(web_platform.url + "/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in with API key").click()
    page.get_by_role("button", name="Start netplus lab").click()
    expect(page).to_have_url(LAB_URL)
    found = LAB_URL.match(page.url)
    assert found is not None
    lab_url, sid = page.url, found.group(1)
    expect(page.locator("#state")).to_have_text("running", timeout=60_000)
    status = page.locator("#term-status")
    expect(status).to_have_text(CONNECTED, timeout=20_000)  # terminal 1: this tab

    ws_url = web_platform.url.replace("http://", "ws://") + f"/v1/scenarios/{sid}/terminal"
    with ExitStack() as others:  # terminals 2-4: the same learner's other device
        devices = [others.enter_context(connect(ws_url, additional_headers={"x-api-key": key}))
                   for _ in range(3)]
        for ws in devices:
            ws.recv(timeout=30)  # the shell's first output: the terminal is live

        second_tab = page.context.new_page()
        second_tab.goto(lab_url)
        refused = second_tab.locator("#term-status")
        expect(refused).to_have_text(re.compile(
            r"This lab already has 4 open terminals, the most your plan allows\. "
            r"Close one and try again\."), timeout=20_000)
        expect(refused).to_have_class(re.compile(r"\berror\b"))
        expect(refused).to_have_attribute("data-error", "terminal_limit")
        expect(second_tab.locator(".xterm-rows")).to_contain_text("already has 4 open terminals")
        expect(status).to_have_text(CONNECTED)  # the first tab keeps its terminal

        devices[0].close()  # frees a slot; reload until the orchestrator has released it
        again = second_tab.locator("#term-status")
        for _ in range(20):
            second_tab.reload()
            expect(again).not_to_have_text("Connecting…", timeout=20_000)
            if again.text_content() == CONNECTED:
                break
        expect(again).to_have_text(CONNECTED)
        second_tab.close()
