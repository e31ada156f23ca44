"""The learner's journey in Chromium, written once and driven two ways (test_browser.py): with
the mouse, and with the keyboard only (Tab / Shift+Tab from the top of each page, Enter,
typing; the documented Ctrl+Shift+X to leave the terminal; never a click or fill).

buy on /plans → start from /tracks → type → spawn_service's server goes down (it closes the
terminal WebSocket itself) and comes back → the page reconnects by itself to the same shell
with its scrollback → reload → same shell → check a task (a reason) → reveal hints (cost shown)
→ Submit asks first (cancel once, then confirm) → result with weight, reasons, hints used and
authenticity → the recorded session replays in the asciinema player.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, expect

from .conftest import LAB_URL, WebPlatform, docs_images
from .test_human_pages import JARGON

CONNECTED = "Connected to the learner host."

TERMINAL_INPUT = "#terminal .xterm-helper-textarea"
MAX_KEY_STEPS = 120  # Tab presses to reach one control: far more than any page has
HAS_FOCUS_RING = """el => el === document.activeElement && el.matches(':focus-visible')
  && getComputedStyle(el).outlineStyle !== 'none' && parseFloat(getComputedStyle(el).outlineWidth) >= 2"""
# The terminal's box shows that the keyboard is in it (its input is an invisible textarea).
TERMINAL_RING = """el => el.contains(document.activeElement)
  && getComputedStyle(el).outlineStyle !== 'none' && parseFloat(getComputedStyle(el).outlineWidth) >= 2"""
# Which way Tab must go from the focused element to reach `target` (document order).
DIRECTION = """target => {
  const at = document.activeElement;
  if (!at || at === document.body) { return 'Tab'; }
  return at.compareDocumentPosition(target) & Node.DOCUMENT_POSITION_PRECEDING ? 'Shift+Tab' : 'Tab';
}"""


# Keyboard-only proof: any real pointer press on any page of the tab is remembered for the tab
# (a click or tap fires pointerdown; Enter or Space on a control does not).
POINTER_GUARD = """addEventListener('pointerdown', e => { if (e.isTrusted) {
  sessionStorage.setItem('forge.test.pointer', String(e.target && e.target.outerHTML).slice(0, 80)); } },
  true);"""
POINTER_USED = "sessionStorage.getItem('forge.test.pointer')"


@dataclass
class Driver:
    """Operates the pages with the mouse, or with the keyboard only."""

    page: Page
    keyboard_only: bool

    def __post_init__(self) -> None:
        if self.keyboard_only:
            self.page.add_init_script(POINTER_GUARD)

    def pointer_used(self) -> str | None:
        """What a mouse or touch pressed in this tab so far, if anything."""
        used = self.page.evaluate(POINTER_USED)
        return str(used) if used is not None else None

    def press(self, target: Locator) -> None:
        """Activate a button or link: a click, or Tab to it (focus ring shown) and Enter."""
        if not self.keyboard_only:
            target.click()
            return
        self.focus(target)
        assert target.evaluate(HAS_FOCUS_RING), f"no visible focus on {target}"
        self.page.keyboard.press("Enter")

    def focus(self, target: Locator) -> None:
        """Move the keyboard focus to `target` with Tab / Shift+Tab only; out of the terminal
        (which keeps Tab for the shell) with its documented key, Ctrl+Shift+X."""
        expect(target).to_be_visible()
        handle = target.element_handle()
        assert handle is not None
        for _ in range(MAX_KEY_STEPS):
            if handle.evaluate("el => el === document.activeElement"):
                return
            if self.page.evaluate("!!document.activeElement.closest('.xterm')"):
                self.page.keyboard.press("Control+Shift+X")
                continue
            self.page.keyboard.press(handle.evaluate(DIRECTION))
        raise AssertionError(f"{target} is not reachable with the keyboard")

    def into_terminal(self) -> None:
        """Put the keyboard in the learner's terminal (a click, or Tab to it)."""
        if self.keyboard_only:
            self.focus(self.page.locator(TERMINAL_INPUT))
            assert self.page.locator("#terminal").evaluate(TERMINAL_RING), "no focus shown"
        else:
            self.page.locator("#terminal").click()

    def run(self, command: str) -> None:
        """Type a command into the focused terminal and press Enter."""
        if self.keyboard_only:
            self.page.keyboard.type(command)
        else:
            self.page.keyboard.insert_text(command)
        self.page.keyboard.press("Enter")


def buy_and_start(drive: Driver, url: str, problems: list[str] | None = None) -> str:
    """A fresh browser buys Pro with the stand-in gateway and starts netplus; the lab's id.
    With `problems`, the payment page (reached through the Choose button) is checked too."""
    page = drive.page
    page.goto(url + "/")
    expect(page).to_have_url(url + "/signin")
    drive.press(page.get_by_role("link", name="Choose a plan"))
    expect(page).to_have_url(url + "/plans")
    expect(page.locator("#stub-note")).to_contain_text("No card is charged")
    drive.press(page.get_by_role("button", name="Choose Pro"))
    expect(page.get_by_role("heading", name="Pay for the Pro plan")).to_be_visible()
    if problems is not None:
        check_in_place(page, "checkout", problems)
    # The payment page is a page of its own (review CC: it was the answer to the Choose
    # button's POST, so Reload asked to post again, and then failed each time).
    expect(page).to_have_url(url + "/checkout")
    page.reload()
    expect(page.get_by_role("heading", name="Pay for the Pro plan")).to_be_visible()
    drive.press(page.get_by_role("button", name="Complete test payment"))
    expect(page).to_have_url(url + "/tracks")
    expect(page.get_by_text("plan PRO")).to_be_visible()
    history = page.evaluate("performance.getEntriesByType('navigation').map(e => e.name)")
    assert not any("token" in entry or "checkout=" in entry for entry in [page.url, *history])
    # Back after paying: no form to post again, a page that leads on.
    page.go_back()
    expect(page.get_by_role("heading", name="No payment in progress")).to_be_visible()
    drive.press(page.get_by_role("link", name="Go to your labs"))
    expect(page).to_have_url(url + "/tracks")
    drive.press(page.get_by_role("button", name="Start this lab: Find the server"))
    expect(page).to_have_url(LAB_URL)
    found = LAB_URL.match(page.url)
    assert found is not None and "token" not in page.url
    expect(page.locator("#state")).to_have_text("running", timeout=60_000)
    # The lab is called by its title (its id and track under it, for support).
    title = page.locator("#lab > h1")  # the page's (the task's text has its own)
    expect(title).to_contain_text("Find the server")
    expect(title).to_contain_text(found.group(1))
    expect(page.locator("#term-status")).to_have_text(CONNECTED, timeout=20_000)
    return found.group(1)


def assert_finger_sized(*targets: Locator) -> None:
    """Each target is at least 44 CSS pixels tall, the size a fingertip hits reliably."""
    for target in targets:
        box = target.bounding_box()
        assert box is not None and box["height"] >= 44, (target, box)


def line(rows: Locator, text: str) -> Locator:
    """The terminal rows that read exactly `text` (output, not the command that printed it)."""
    return rows.locator("div").filter(has_text=re.compile(rf"^{re.escape(text)}\s*$"))


def survive_drop_and_reload(drive: Driver, platform: WebPlatform, tag: str) -> None:
    """Set a variable, lose the server, come back to the same shell; reload, same again."""
    page = drive.page
    rows = page.locator("#terminal .xterm-rows")
    banner = page.locator("#term-panel-learner .term-banner")
    drive.into_terminal()
    drive.run(f"export JOURNEY={tag}-$((40+2)); echo before-drop-$JOURNEY")
    expect(line(rows, f"before-drop-{tag}-42")).to_have_count(1, timeout=20_000)
    # The process serving the page and its WebSocket goes down (the server closes the socket);
    # the page says so and keeps trying, then reattaches by itself once it is back.
    with platform.spawn_stopped():
        expect(banner).to_be_visible(timeout=20_000)
        expect(banner).to_contain_text("Connection lost — reconnecting…")
        expect(banner.get_by_role("button", name="Reconnect now")).to_be_visible()
        # Forget the page's own copy of the screen: what shows next comes from the server.
        page.evaluate("document.getElementById('term-panel-learner').forgeTerminal.term.reset()")
        expect(line(rows, f"before-drop-{tag}-42")).to_have_count(0)
    expect(page.locator("#term-status")).to_have_text(CONNECTED, timeout=30_000)
    expect(banner).to_be_hidden()
    expect(page.locator("#term-panel-learner")).to_have_attribute("data-connects", "2")
    # The same shell: its scrollback replayed, once; the variable is still set.
    expect(line(rows, f"before-drop-{tag}-42")).to_have_count(1, timeout=20_000)
    drive.into_terminal()
    drive.run("echo after-drop-$JOURNEY")
    expect(line(rows, f"after-drop-{tag}-42")).to_have_count(1, timeout=20_000)
    page.reload()
    expect(page.locator("#term-status")).to_have_text(CONNECTED, timeout=20_000)
    expect(line(rows, f"after-drop-{tag}-42")).to_have_count(1, timeout=20_000)
    drive.into_terminal()
    drive.run("echo reloaded-$JOURNEY")
    expect(line(rows, f"reloaded-{tag}-42")).to_have_count(1, timeout=20_000)


def check_hints_and_submit(drive: Driver, criterion: str) -> None:
    """Check a task (not passing, with a reason), reveal two hints, cancel Submit, confirm it."""
    page = drive.page
    task = page.locator(f"#task-{criterion}")
    check = task.get_by_role("button", name=f"Check this task ({criterion})")
    drive.press(check)
    expect(task.locator(".task-result")).to_contain_text("Not passing yet: ", timeout=30_000)
    expect(task.locator(".task-result")).to_contain_text("changes no score")
    if drive.keyboard_only:  # the keyboard stays where it was while the check ran
        expect(check).to_be_focused()
    # Pressed again at once: the answer stays, with when the task can be checked again.
    drive.press(check)
    expect(task.locator(".task-result")).to_contain_text(
        re.compile(r"^Not passing yet: .*\(Checked moments ago: check again in \d+ s\.\)$"))

    hints = page.locator("#hints")
    expect(hints.locator(".hint-text").first).to_be_hidden()
    expect(hints).not_to_contain_text("/dev/tcp")
    expect(hints.locator("#hint-h2 .hint-cost")).to_contain_text("10 %")  # before revealing
    drive.press(hints.get_by_role("button", name="Reveal hint 1"))
    # A reveal is a request and a store write: under a loaded CI machine it once took over
    # the default 5 s (the button stayed disabled meanwhile).
    expect(hints.locator("#hint-h1 .hint-text")).to_contain_text("ip -4 route", timeout=20_000)
    # Submit's question counts it: "1 hint", and no "(-0 %)" for a free one.
    expect(page.locator("#hint-plural")).to_have_text("")
    expect(page.locator("#hint-cost-note")).to_be_hidden()
    # A hint that costs score asks on the page first: one stray tap, or a double click,
    # reveals nothing.
    paid = hints.get_by_role("button", name="Reveal hint 2 (costs 10 % of the score)")
    if drive.keyboard_only:
        drive.press(paid)
    else:
        paid.dblclick()
    expect(hints.locator("#hint-h2 .hint-confirm")).to_have_text(
        "Hint 2 costs 10 % of the score. Press again to reveal it.")
    expect(hints.locator("#hint-h2 .hint-text")).to_be_hidden()
    drive.press(hints.get_by_role("button",
                                  name="Yes, reveal hint 2 (costs 10 % of the score)"))
    expect(hints.locator("#hint-h2 .hint-text")).to_contain_text("/dev/tcp", timeout=20_000)
    expect(hints.locator("#hint-h2 .hint-confirm")).to_have_text("")

    # Submit asks first and says what ends; Cancel keeps the lab and gives focus back.
    submit = page.get_by_role("button", name="Submit for grading")
    drive.press(submit)
    dialog = page.get_by_role("dialog", name="Submit this lab?")
    expect(dialog).to_contain_text("Submitting ends the lab: your terminals close, the lab "
                                   "is deleted, and it is graded once. You have used 2 hints "
                                   "(\N{MINUS SIGN}10 %).")
    cancel = dialog.get_by_role("button", name="Cancel, keep working")
    expect(cancel).to_be_focused()  # the safe choice has the focus
    if drive.keyboard_only:  # Esc cancels too, and gives the focus back
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(submit).to_be_focused()
        drive.press(submit)
        expect(cancel).to_be_focused()
    drive.press(cancel)
    expect(dialog).to_be_hidden()
    expect(submit).to_be_focused()
    if drive.keyboard_only:
        assert submit.evaluate(HAS_FOCUS_RING)
    expect(page.locator("#state")).to_have_text("running")
    drive.press(submit)
    drive.press(dialog.get_by_role("button", name="Submit and end the lab"))


def read_result(drive: Driver, sid: str, earned: int, failed: str, tag: str) -> None:
    """The graded lab page, then its result page, whose recording replays the session."""
    page = drive.page
    expect(page.locator("#score-value")).to_be_visible(timeout=120_000)
    expect(page.locator("#score-weight")).to_have_text(f"{earned} of 4 weight earned")
    expect(page.locator("#hints-used")).to_have_text(
        "2 hints revealed: \N{MINUS SIGN}10 % of the score")
    expect(page.locator("#verification")).to_contain_text("Authentic: signed by key")
    row = page.locator(f"#criterion-{failed}")
    expect(row).to_contain_text("failed")
    expect(row.locator(".reasons")).to_contain_text("not there yet")
    # Whether the lab is passed, in words, and the score as a percentage; then a way on.
    expect(page.locator("#outcome")).to_contain_text("Not passed:")
    expect(page.locator("#score-percent")).to_have_text(re.compile(r"^\d+(\.\d)? %$"))
    expect(page.locator("#start-again")).to_have_attribute("href", "/tracks#lab-netplus")
    drive.press(page.get_by_role("link", name="Link to this result"))
    expect(page).to_have_url(re.compile(rf".*/lab/{sid}/result$"))
    # The recorded session plays (asciinema-player); jump to 90 % ("9") and it reaches the end.
    player = page.locator("#recordings .cast-player").first
    drive.press(player.get_by_role("button").first)
    page.keyboard.press("9")
    expect(player.locator(".ap-term")).to_contain_text(f"reloaded-{tag}-42", timeout=30_000)


AXE = Path(__file__).parent / "vendor" / "axe.min.js"
NARROW = {"width": 360, "height": 740}
SHOT_WIDTHS = (1280, 390)
SERIOUS = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"], runOnly: {
    type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
  return result.violations.filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => v.id + ": " + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "));
}"""


def check_in_place(page: Page, name: str, problems: list[str]) -> None:
    """check_pages for the page shown now: at 360x740, then back to its size."""
    size = page.viewport_size
    page.set_viewport_size(NARROW)
    try:
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > NARROW["width"]:
            problems.append(f"{name}: {width} px wide at 360")
        words = page.inner_text("body").lower()
        problems.extend(f"{name}: says {w!r}" for w in JARGON if w in words)
        # Evaluated by the test's debugger channel, which the page's CSP does not govern.
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
        problems.extend(f"{name}: {v}" for v in page.evaluate(SERIOUS))
    finally:
        if size is not None:
            page.set_viewport_size(size)


def check_pages(browser: Browser, state: object, urls: dict[str, str],
                problems: list[str]) -> None:
    """Open each page at 360x740 (signed in as `state`): no sideways scroll, axe clean, no
    jargon on learner pages; and save the README screenshots when asked to."""
    context = browser.new_context(viewport=NARROW, storage_state=state,  # type: ignore[arg-type]
                                  bypass_csp=True)  # so the test can add axe, never the app
    try:
        page = context.new_page()
        for name, url in urls.items():
            page.set_viewport_size(NARROW)
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > NARROW["width"]:
                problems.append(f"{name}: {width} px wide at 360")
            if not name.startswith("ops"):  # operators may read service names
                words = page.inner_text("body").lower()
                problems.extend(f"{name}: says {w!r}" for w in JARGON if w in words)
            page.add_script_tag(path=str(AXE))
            problems.extend(f"{name}: {v}" for v in page.evaluate(SERIOUS))
            if (images := docs_images()) is not None:
                for wide in SHOT_WIDTHS:
                    page.set_viewport_size({"width": wide, "height": 900})
                    page.screenshot(path=str(images / f"{name}-{wide}.png"))
    finally:
        context.close()


def save_key_and_sign_back_in(drive: Driver, browser: Browser, url: str) -> None:
    """After checkout the buyer comes back later: the notice leads to the account page,
    where "Show my sign-in key" shows the personal sign-in key once and it is saved as a
    text file (coming back to the page no longer shows it); after signing out, "Continue with your purchase" signs in again on this browser, and
    on another device (a fresh context) the saved key does, with the plan there."""
    page = drive.page
    drive.press(page.get_by_role("link", name="Show it and save it"))
    expect(page).to_have_url(url + "/account")
    drive.press(page.get_by_role("button", name="Show my sign-in key"))
    expect(page.get_by_text("shown only this once")).to_be_visible()
    key = page.get_by_role("textbox", name="Sign-in key").input_value()
    assert re.fullmatch(r"fgk_[0-9a-f]{16}_[A-Za-z0-9_-]{32,64}", key)
    with page.expect_download() as saved:
        drive.press(page.get_by_role("button", name="Download as a text file"))
    assert key in Path(saved.value.path()).read_text(encoding="utf-8")
    page.goto(url + "/account")
    expect(page.get_by_role("button", name="Make a new sign-in key")).to_be_visible()
    assert key not in page.content()

    drive.press(page.get_by_role("button", name="Sign out"))
    expect(page).to_have_url(url + "/signin")
    drive.press(page.get_by_role("button", name="Continue with your purchase"))
    expect(page).to_have_url(url + "/tracks")
    expect(page.get_by_text("plan PRO")).to_be_visible()

    other = browser.new_context()
    try:
        fresh = Driver(other.new_page(), keyboard_only=drive.keyboard_only)
        fresh.page.goto(url + "/signin")
        field = fresh.page.get_by_label("Your sign-in key or API key")
        fresh.focus(field)
        fresh.page.keyboard.type(key)
        fresh.press(fresh.page.get_by_role("button", name="Sign in with API key"))
        expect(fresh.page).to_have_url(url + "/tracks")
        expect(fresh.page.get_by_text("plan PRO")).to_be_visible()
        assert fresh.pointer_used() is None
    finally:
        other.close()
