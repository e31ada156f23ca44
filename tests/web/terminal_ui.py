"""Steps that exercise the lab page's terminal in Chromium (test_browser.py runs them on its
lab, so no extra platform or lab is started): screen-reader mode, Tab in the shell, copy and
paste, the focus-escape key, a real network drop with automatic reconnect, full screen, and
the page at phone width."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from .relay import CuttableRelay

CONNECTED = "Connected to the learner host."


def run(page: Page, command: str) -> None:
    """Type `command` into the focused terminal and press Enter."""
    page.keyboard.insert_text(command)
    page.keyboard.press("Enter")


def clipboard_becomes(page: Page, text: str) -> None:
    """Wait (bounded) until the system clipboard holds `text`."""
    page.wait_for_function("async (want) => (await navigator.clipboard.readText()) === want",
                           arg=text, timeout=10_000)


def exercise_learner_terminal(page: Page, relay: CuttableRelay) -> None:
    """On a lab page whose learner terminal is connected through `relay` (clipboard granted)."""
    status, rows = page.locator("#term-status"), page.locator("#terminal .xterm-rows")
    # Screen-reader mode is on (xterm.js keeps its accessible copy of the screen), and text
    # that arrives without key presses (dictation, on-screen keyboards) still reaches the shell.
    expect(page.get_by_label("Screen reader mode")).to_be_checked()
    expect(page.locator("#terminal .xterm-accessibility-tree")).to_be_attached()
    terminal = page.get_by_role("region", name="Terminal on host learner")
    terminal.click()
    # Tab stays in the terminal: bash completes the command.
    page.keyboard.insert_text("ech")
    page.keyboard.press("Tab")
    run(page, " tab-$((6*7))")
    expect(rows).to_contain_text("tab-42", timeout=20_000)

    # Copy on selection, Ctrl+Shift+C, and Ctrl+C with a selection copy; the last neither
    # interrupts the line being typed nor leaves the selection; Ctrl+Shift+V pastes.
    run(page, "echo copy-$((1000+234))")
    word = rows.locator("div").filter(has_text=re.compile(r"^copy-1234\s*$"))
    expect(word).to_have_count(1, timeout=20_000)
    page.keyboard.insert_text("echo keep")
    expect(rows).to_contain_text("$ echo keep", timeout=20_000)  # the shell has the line
    spot = word.bounding_box()  # the screen layer above the rows takes the mouse
    assert spot is not None
    page.mouse.dblclick(spot["x"] + 12, spot["y"] + spot["height"] / 2)
    clipboard_becomes(page, "copy-1234")
    page.evaluate("navigator.clipboard.writeText('-')")
    page.keyboard.press("Control+Shift+C")
    clipboard_becomes(page, "copy-1234")
    page.evaluate("navigator.clipboard.writeText('-')")
    page.keyboard.press("Control+C")
    clipboard_becomes(page, "copy-1234")
    run(page, " going")
    expect(rows).to_contain_text("keep going", timeout=20_000)
    page.keyboard.insert_text("echo pasted-")
    page.keyboard.press("Control+Shift+V")
    page.keyboard.press("Enter")
    expect(rows).to_contain_text("pasted-copy-1234", timeout=20_000)
    page.keyboard.insert_text("echo never")
    expect(rows).to_contain_text("$ echo never", timeout=20_000)  # read before the interrupt
    page.keyboard.press("Control+C")  # no selection: an interrupt, as in any terminal
    expect(rows).to_contain_text("echo never^C", timeout=20_000)

    # The documented key takes the keyboard out of the terminal to the Submit button.
    expect(page.locator("#term-help")).to_contain_text("Ctrl+Shift+X")
    page.keyboard.press("Control+Shift+X")
    expect(page.get_by_role("button", name="Submit for grading")).to_be_focused()

    # The network drops: a banner says so and counts attempts, then the terminal comes back
    # by itself and takes input again.
    banner = page.locator("#term-panel-learner .term-banner")
    relay.cut()
    expect(banner).to_be_visible(timeout=20_000)
    expect(banner).to_contain_text(re.compile(r"Connection lost — reconnecting… \(attempt \d+"))
    expect(banner.get_by_role("button", name="Reconnect now")).to_be_visible()
    relay.restore()
    expect(status).to_have_text(CONNECTED, timeout=30_000)
    expect(banner).to_be_hidden()
    expect(page.locator("#term-panel-learner")).to_have_attribute("data-connects", "2")
    terminal.click()
    run(page, "echo back-$((6*7))")
    expect(rows).to_contain_text("back-42", timeout=20_000)
    # A server that reattaches replays the shell's screen: the page shows it once, not twice.
    expect(rows.locator("div").filter(has_text=re.compile(r"^tab-42\s*$"))).to_have_count(1)

    # Full screen and back.
    full = page.get_by_role("button", name="Full screen")
    full.click()
    section = page.locator("#term-section")
    expect(section).to_have_class(re.compile(r"\bis-fullscreen\b"))
    page.get_by_role("button", name="Exit full screen").click()
    expect(section).not_to_have_class(re.compile(r"\bis-fullscreen\b"))

    # A phone: nothing scrolls sideways, the terminal starts on the first screen, readable.
    page.set_viewport_size({"width": 360, "height": 740})
    page.wait_for_function("document.documentElement.scrollWidth <= 360", timeout=10_000)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360
    box = terminal.bounding_box()
    assert box is not None and box["y"] < 740 and box["x"] >= 0
    assert box["x"] + box["width"] <= 360
    font = page.evaluate("parseFloat(getComputedStyle("
                         "document.querySelector('#terminal .xterm-rows')).fontSize)")
    assert font >= 12

    resize_while_connecting(page, relay)

    # Offline (the laptop left the Wi-Fi): no retries until the browser is online again,
    # then it reconnects at once.
    relay.cut()
    expect(banner).to_be_visible(timeout=20_000)
    page.context.set_offline(True)  # the next attempt finds the browser offline
    expect(banner).to_contain_text("Connection lost — waiting for the network…",
                                   timeout=30_000)
    relay.restore()
    page.context.set_offline(False)
    expect(page.locator("#term-panel-learner")).to_have_attribute("data-connects", "4",
                                                                  timeout=20_000)
    expect(banner).to_be_hidden()

    # Signed out (in another tab), then a drop: the page says so and does not retry (a server
    # that closes a signed-out learner's terminals itself is told apart the same way).
    csrf = page.locator("form[action='/signout'] input[name=csrf]").first.get_attribute("value")
    assert page.request.post(relay.url + "/signout", headers={"origin": relay.url},
                             form={"csrf": csrf or ""}, max_redirects=0).status == 303
    relay.cut()
    relay.restore()
    expect(status).to_have_attribute("data-error", "signed_out", timeout=30_000)
    expect(status).to_contain_text(re.compile(r"signed out\b.*Sign in again"))
    expect(banner).to_be_hidden()


TERM_SIZE = ("() => { const t = document.querySelector('#term-panel-learner').forgeTerminal"
             ".term; return [t.rows, t.cols]; }")


def resize_while_connecting(page: Page, relay: CuttableRelay) -> None:
    """The window changes size while the terminal's socket is still connecting (a slow
    network after a drop): the page cannot send the resize then, so it sends it once
    attached; the shell gets the size the page shows, not the one it connected with."""
    relay.hold_terminals(b"host=learner")
    relay.cut()
    relay.restore()
    deadline = time.monotonic() + 30
    while relay.held_count() == 0:  # the page retried: its socket hangs, connecting
        assert time.monotonic() < deadline, "the page never reconnected"
        time.sleep(0.05)
    before = page.evaluate(TERM_SIZE)
    page.set_viewport_size({"width": 1440, "height": 960})
    page.wait_for_function(f"(b) => {{ const s = ({TERM_SIZE})(); "
                           "return s[0] !== b[0] || s[1] !== b[1]; }", arg=before,
                           timeout=10_000)
    relay.release_terminals()
    expect(page.locator("#term-status")).to_have_text(CONNECTED, timeout=30_000)
    rows, cols = page.evaluate(TERM_SIZE)
    page.get_by_role("region", name="Terminal on host learner").click()
    run(page, "stty size; echo size-$((2+2))")
    screen = page.locator("#terminal .xterm-rows div")
    expect(screen.filter(has_text=re.compile(rf"^{rows} {cols}\s*$"))).to_have_count(
        1, timeout=20_000)
