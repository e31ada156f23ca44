"""What a learner types or pastes reaches the shell, or the page says it did not
(Playwright + Chromium, one netplus lab shared by the module's tests).

An outside pass found: a paste over 64 KiB was one WebSocket message, which the server closes
(1009), and the page quietly reconnected (`cat > f` of 5,000 lines wrote none); the phone's
Paste box cut 33,000 characters to 16,384 without a word; offline or on a stalled link the
page said "Connected" for 80 s while what was typed was lost; a desktop and a phone on the
same shell garbled the desktop (the last to attach sized the shell); in full screen on a
phone held sideways the typing line was behind the key bar; the receipt field and the
Paste box had only the browser's faint focus ring.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from .conftest import WebPlatform, running_web_platform
from .journey import line
from .relay import CuttableRelay

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store

CONNECTED = "Connected to the learner host."
TERM_SIZE = ("() => { const t = document.querySelector('#term-panel-learner').forgeTerminal"
             ".term; return [t.rows, t.cols]; }")
PHONE = {"is_mobile": True, "has_touch": True}


@dataclass
class Lab:
    path: str  # /lab/scn-…
    state: dict  # type: ignore[type-arg]  # the signed-in browser's cookies (storage_state)


@pytest.fixture(scope="module")
def web_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    with running_web_platform(tmp_path_factory.mktemp("web-resilience")) as platform:
        yield platform


@pytest.fixture(scope="module")
def lab(web_platform: WebPlatform, browser: Browser) -> Iterator[Lab]:
    """A running netplus lab of one learner, and that learner's signed-in browser state."""
    context = browser.new_context()
    try:
        sid = web_platform.start_lab(context.new_page(), web_platform.learner_key("acme", "rita"))
        yield Lab("/lab/" + sid, context.storage_state())
    finally:
        context.close()


def opened(browser: Browser, lab: Lab, base: str, **options: object) -> tuple[BrowserContext,
                                                                                Page]:
    """The lab's page in a new context of the signed-in learner, its terminal connected."""
    context = browser.new_context(storage_state=lab.state, **options)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(base + lab.path)
    expect(page.locator("#term-status")).to_have_text(CONNECTED, timeout=30_000)
    return context, page


def run(page: Page, command: str) -> None:
    page.keyboard.insert_text(command)
    page.keyboard.press("Enter")


@pytest.mark.root
def test_a_long_paste_reaches_the_shell_whole(web_platform: WebPlatform, lab: Lab,
                                              browser: Browser) -> None:
    """5,000 lines (155 KB, over the server's 64 KiB message cap) pasted into `cat > f`."""
    context, page = opened(browser, lab, web_platform.url,
                           viewport={"width": 1280, "height": 800})
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"],
                                  origin=web_platform.url)
        rows = page.locator("#terminal .xterm-rows")
        page.locator("#terminal").click()
        # The paste waits for `cat`: pasted while bash still read the line, it went to bash
        # in bracketed-paste mode. Bash turns that mode off before it runs the line, so once
        # the line's own output shows, the terminal has seen it off.
        run(page, "echo reading-$((40+2)); cat > /tmp/pasted.txt")
        expect(rows).to_contain_text("reading-42", timeout=20_000)
        text = "".join(f"line {i:05d} of the pasted text, padded out\n" for i in range(5000))
        assert len(text.encode()) > 150_000
        page.evaluate("(text) => navigator.clipboard.writeText(text)", text)
        page.keyboard.press("Control+Shift+V")
        page.keyboard.press("Control+D")
        run(page, "clear; echo got-$(wc -l < /tmp/pasted.txt)-$(md5sum < /tmp/pasted.txt)")
        digest = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
        expect(rows).to_contain_text(f"got-5000-{digest}", timeout=60_000)
        expect(page.locator("#term-panel-learner")).to_have_attribute("data-connects", "1")
    finally:
        context.close()


def typed_while_disconnected_is_sent_once_back(page: Page, lose: Callable[[], None],
                                               said: str, back: Callable[[], None]) -> None:
    """The link goes (`lose`): the page says `said` and that it is not connected; what the
    learner types then is kept, said so, and reaches the shell once the link is `back`."""
    status, rows = page.locator("#term-status"), page.locator("#terminal .xterm-rows")
    page.locator("#terminal").click()
    run(page, "echo before-$((1+1))")
    expect(rows).to_contain_text("before-2", timeout=20_000)
    lose()
    expect(page.locator("#term-panel-learner .term-banner")).to_contain_text(
        said, timeout=25_000)
    expect(status).not_to_have_text(CONNECTED)
    run(page, "echo kept-$((2+3))")
    expect(status).to_contain_text(re.compile(
        r"What you typed \(\d+ bytes\) is kept and will be sent when the terminal reconnects"))
    back()
    expect(status).to_have_text(CONNECTED, timeout=40_000)
    expect(rows).to_contain_text("kept-5", timeout=20_000)


@pytest.mark.root
def test_offline_the_page_says_so_and_keeps_what_is_typed(web_platform: WebPlatform,
                                                           lab: Lab, browser: Browser) -> None:
    """The browser goes offline: said at once (it said "Connected" for 80 s)."""
    context, page = opened(browser, lab, web_platform.url)
    try:
        typed_while_disconnected_is_sent_once_back(
            page, lambda: context.set_offline(True),
            "Connection lost — waiting for the network…", lambda: context.set_offline(False))
    finally:
        context.close()


@pytest.mark.root
def test_a_stalled_link_is_noticed_and_the_terminal_comes_back(
        relay: CuttableRelay, lab: Lab, browser: Browser) -> None:
    """The link hangs without closing: within about 15 s the page says so (the 25 s wait
    leaves room for a slow machine), then reconnects by itself once it works again.

    What was typed in those seconds, before the page noticed, went out on the hung socket
    and was lost with it ("may not have reached the shell"): it now reaches the shell once,
    sent again on the new socket for as much as the shell had not received."""
    context, page = opened(browser, lab, relay.url)

    def stall_and_type() -> None:
        relay.stall()
        run(page, "echo during-$((3+4))")

    try:
        typed_while_disconnected_is_sent_once_back(page, stall_and_type,
                                                   "No answer from the lab", relay.unstall)
        rows = page.locator("#terminal .xterm-rows")
        expect(line(rows, "during-7")).to_have_count(1)  # neither lost nor typed twice
    finally:
        context.close()


@pytest.mark.root
def test_a_desktop_and_a_phone_on_one_shell_each_get_their_own_size(
        web_platform: WebPlatform, lab: Lab, browser: Browser) -> None:
    """The phone attaches last (the shell takes its 40-odd columns); the learner goes back
    to the desktop's terminal and the shell draws for the desktop's width again."""
    desktop_ctx, desktop = opened(browser, lab, web_platform.url,
                                  viewport={"width": 1280, "height": 800})
    try:
        phone_ctx, phone = opened(browser, lab, web_platform.url,
                                  viewport={"width": 390, "height": 844}, **PHONE)
        try:
            phone_rows, phone_cols = phone.evaluate(TERM_SIZE)
            phone.locator("#terminal").tap()
            run(phone, "echo phone-$(stty size | tr ' ' x)")
            expect(phone.locator("#terminal .xterm-rows")).to_contain_text(
                f"phone-{phone_rows}x{phone_cols}", timeout=20_000)
            rows, cols = desktop.evaluate(TERM_SIZE)
            assert cols > phone_cols + 20
            desktop.keyboard.press("Control+Shift+X")  # the learner was elsewhere on the page
            desktop.locator("#terminal").click()
            run(desktop, "echo desk-$(stty size | tr ' ' x)")
            expect(desktop.locator("#terminal .xterm-rows")).to_contain_text(
                f"desk-{rows}x{cols}", timeout=20_000)
        finally:
            phone_ctx.close()
    finally:
        desktop_ctx.close()


def typing_line_above_the_bar(page: Page, typed: str) -> None:
    """Wait (bounded) until the row showing `typed` is on screen and above the key bar."""
    bar = page.get_by_role("toolbar", name="Keys a phone keyboard lacks")
    row = page.locator("#terminal .xterm-rows > div").filter(has_text=typed).last
    end = time.monotonic() + 20
    while True:
        box, bar_box = row.bounding_box(), bar.bounding_box()
        assert box is not None and bar_box is not None
        if box["y"] >= 0 and box["y"] + box["height"] <= bar_box["y"] + 1:
            return
        assert time.monotonic() < end, (box, bar_box)
        time.sleep(0.1)


@pytest.mark.root
@pytest.mark.parametrize("size", [(844, 390), (390, 440)])
def test_in_full_screen_on_a_phone_the_typing_line_is_above_the_key_bar(
        web_platform: WebPlatform, lab: Lab, browser: Browser, size: tuple[int, int]) -> None:
    context, page = opened(browser, lab, web_platform.url,
                           viewport={"width": size[0], "height": size[1]}, **PHONE)
    try:
        page.get_by_role("button", name="Full screen").tap()
        expect(page.locator("#term-section")).to_have_class(re.compile(r"\bis-fullscreen\b"))
        page.locator("#terminal").tap()
        run(page, "clear; seq 1 60; echo end-$((2*3))")  # the screen fills: the prompt at the end
        expect(page.locator("#terminal .xterm-rows")).to_contain_text("end-6", timeout=20_000)
        page.keyboard.insert_text("echo z9")  # short: the prompt's row does not wrap
        typing_line_above_the_bar(page, "echo z9")
        page.keyboard.press("Control+U")
    finally:
        context.close()


@pytest.mark.root
def test_the_phone_paste_box_sends_a_long_text_whole(web_platform: WebPlatform, lab: Lab,
                                                     browser: Browser) -> None:
    """33,000 characters pasted into the Paste box (it cut them to 16,384 without a word)."""
    context, page = opened(browser, lab, web_platform.url,
                           viewport={"width": 390, "height": 844}, **PHONE)
    try:
        rows = page.locator("#terminal .xterm-rows")
        page.locator("#terminal").tap()
        run(page, "cat > /tmp/box.txt")
        page.get_by_role("toolbar", name="Keys a phone keyboard lacks").get_by_role(
            "button", name="Paste", exact=True).tap()
        field = page.get_by_label("Paste here")
        expect(field).to_be_focused(timeout=10_000)
        # 33,000 characters typed in one go: slow to lay out on a loaded machine.
        field.fill("".join(f"{i:09d}\n" for i in range(3300)), timeout=120_000)
        page.get_by_role("button", name="Send to the terminal").tap()
        page.keyboard.press("Control+D")
        run(page, "clear; echo box-$(wc -c < /tmp/box.txt)")
        expect(rows).to_contain_text("box-33000", timeout=60_000)
    finally:
        context.close()


def test_text_fields_show_the_same_focus_ring_as_buttons(web_platform: WebPlatform,
                                                         page: Page) -> None:
    """The receipt field (and every textarea and select) had the browser's faint ring."""
    page.goto(web_platform.url + "/signin")
    receipt = page.locator("#receipt")
    receipt.focus()
    ring = receipt.evaluate("el => [getComputedStyle(el).outlineStyle, "
                            "getComputedStyle(el).outlineColor, getComputedStyle(el).outlineWidth]")
    assert ring == ["solid", "rgb(242, 183, 5)", "3px"], ring


@pytest.mark.root
def test_a_new_shell_says_so_on_the_screen_in_every_tab(web_platform: WebPlatform, lab: Lab,
                                                        browser: Browser) -> None:
    """The shell ends (here `exit`; an orchestrator restart ends it too) and the page
    attaches a new one: the screen was wiped, and only a note that went after 4 s said why,
    leaving a bare prompt, the command's output gone. In a second tab of the lab not even
    that: the other tab reconnected first and started the new shell, which this one joined
    as "not new". Both screens now say it, and keep it."""
    first, page = opened(browser, lab, web_platform.url)
    second, other = opened(browser, lab, web_platform.url)
    try:
        notice = re.compile(r"^\[Your previous shell had ended: a new shell was started\. "
                            r"Whatever ran in it\s*has stopped\.\]")
        rows = page.locator("#terminal .xterm-rows")
        page.locator("#terminal").click()
        run(page, "echo before-$((6*7))")
        expect(other.locator("#terminal .xterm-rows")).to_contain_text("before-42")
        run(page, "exit")
        for tab in (page, other):
            expect(tab.locator("#terminal .xterm-rows")).to_contain_text(notice)
            expect(tab.locator("#terminal .xterm-rows")).not_to_contain_text("before-42")
            expect(tab.locator("#term-status")).to_have_text(CONNECTED)
        run(page, "echo after-$((6*7))")  # the new shell takes input
        expect(rows).to_contain_text("after-42")
    finally:
        second.close()
        first.close()


@pytest.mark.root
def test_a_paste_the_program_does_not_read_is_given_up_saying_so(
        web_platform: WebPlatform, lab: Lab, browser: Browser) -> None:
    """The shell's program reads nothing (`sleep`): the lab keeps 64 KB of input and drops
    the rest, so the page stops sending and says how much of the paste was not sent. (Last
    in the module: the shell is busy until the sleep ends, then skips the kept comments.)"""
    context, page = opened(browser, lab, web_platform.url)
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"],
                                  origin=web_platform.url)
        page.locator("#terminal").click()
        run(page, "sleep 45")
        text = "# a comment line the shell skips once the sleep is over, padded\n" * 4000
        page.evaluate("(text) => navigator.clipboard.writeText(text)", text)
        page.keyboard.press("Control+Shift+V")
        note = page.locator("#term-note")
        expect(note).to_contain_text(re.compile(
            r"Not sent: \d+ bytes of what you pasted or typed\. The program in the terminal "
            r"is not reading its input\."), timeout=40_000)
        expect(page.locator("#term-status")).to_have_text(CONNECTED)
    finally:
        context.close()
