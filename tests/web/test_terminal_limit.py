"""The lab page tells the learner why a terminal is refused or closed (Playwright + Chromium).

A lab's shell on a host (its terminal session) takes at most 4 tabs and devices at once;
the page that asks for one more shows the refusal in the page, not a bare "disconnected",
and the terminal opens again once one of the others is closed (the plan's `max_terminals`
counts shells, so tabs of one host never reach it). A terminal left without input for the
plan's `terminal_idle_seconds` closes with a message in the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import yaml
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from forge.content import content_path

from .conftest import WebPlatform, running_web_platform

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store

CONNECTED = "Connected to the learner host."
IDLE_S = 3  # TEAM's terminal_idle_seconds in this module's plans file


@pytest.fixture(scope="module")
def web_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    """The platform with the shipped plans, except TEAM terminals idle out after IDLE_S."""
    tmp = tmp_path_factory.mktemp("web-terminals")
    raw = yaml.safe_load((content_path("plans.yaml")).read_text(encoding="utf-8"))
    raw["plans"]["TEAM"]["terminal_idle_seconds"] = IDLE_S
    (tmp / "plans.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    with running_web_platform(tmp, FORGE_PLANS_FILE=str(tmp / "plans.yaml")) as platform:
        yield platform


def open_lab(page: Page, platform: WebPlatform, key: str) -> str:
    """Sign in with `key`, start netplus, wait until the page's terminal is connected."""
    sid = platform.start_lab(page, key)
    expect(page.locator("#term-status")).to_have_text(CONNECTED, timeout=20_000)
    return sid


@pytest.mark.root
def test_the_page_shows_why_a_terminal_past_the_cap_is_refused(
    web_platform: WebPlatform, page: Page
) -> None:
    key = web_platform.learner_key("acme", "tabby")
    sid = open_lab(page, web_platform, key)  # terminal 1: this tab
    lab_url, status = page.url, page.locator("#term-status")

    ws_url = web_platform.url.replace("http://", "ws://") + f"/v1/scenarios/{sid}/terminal"
    with ExitStack() as others:  # sockets 2-4 on the same shell: the learner's other device
        devices = [others.enter_context(connect(ws_url, additional_headers={"x-api-key": key}))
                   for _ in range(3)]
        for ws in devices:
            ws.recv(timeout=30)  # the shell's first output: the terminal is live

        second_tab = page.context.new_page()
        second_tab.goto(lab_url)
        refused = second_tab.locator("#term-status")
        expect(refused).to_have_text(re.compile(
            r"This terminal is already open in 4 tabs or devices\. "
            r"Close one of them and try again\."), timeout=20_000)
        expect(refused).to_have_class(re.compile(r"\berror\b"))
        expect(refused).to_have_attribute("data-error", "terminal_attach_limit")
        expect(second_tab.locator(".xterm-rows")).to_contain_text("open in 4 tabs or devices")
        expect(status).to_have_text(CONNECTED)  # the first tab keeps its terminal

        devices[0].close()  # frees a place; reload until the orchestrator has released it
        again = second_tab.locator("#term-status")
        for _ in range(20):
            second_tab.reload()
            expect(again).not_to_have_text("Connecting…", timeout=20_000)
            if again.text_content() == CONNECTED:
                break
        expect(again).to_have_text(CONNECTED)
        second_tab.close()


@pytest.mark.root
def test_the_page_says_an_idle_terminal_was_closed(web_platform: WebPlatform,
                                                   page: Page) -> None:
    open_lab(page, web_platform, web_platform.learner_key("acme", "idle", plan="TEAM"))
    status = page.locator("#term-status")
    expect(status).to_have_text(
        f"Terminal closed after {IDLE_S} seconds without input. Reconnect to open a "
        "new one (the lab and your files are as you left them).", timeout=30_000)
    expect(status).to_have_attribute("data-error", "terminal_idle")
    # What the text says to do is on the page (it said "Reload the page" beside this).
    expect(page.locator(".term-reconnect").first).to_be_visible()
    expect(page.locator(".xterm-rows")).to_contain_text("without input")

    # A deliberate close is not retried by itself; the banner's button opens a new terminal.
    panel = page.locator("#term-panel-learner")
    expect(panel).to_have_attribute("data-connects", "1")
    page.locator("#term-panel-learner .term-banner").get_by_role(
        "button", name="Reconnect now").click()
    expect(panel).to_have_attribute("data-connects", "2", timeout=20_000)
