"""The result page's "Graded …" time in the learner's own time zone (Playwright + Chromium,
the real spawn app reading a real scoreboard).

The result page said "Graded 2026-12-07 10:48:03 UTC." to a learner in India, whose list of
labs on /tracks says when each started in their own zone ("2026-12-07 16:18 Asia/Calcutta"):
the two pages of one lab read as hours apart. It now shows the time as the other learner
pages do, in the browser's zone, naming it; the UTC time stays in its title.

The lab page, reloading by itself when the verdict came in, left the keyboard focus at the
top of the page and its title as before ("Find the server · lab …"): a screen-reader user
waiting on it heard nothing of the result. Its Result heading now takes the focus and the
title leads with the outcome. A lab that failed to start, its page reloading by itself
in the same way, now puts the focus on its "ended with no score" note and says so in the
title.

The starting page, with the browser offline, said nothing of it; a failed lab's reason
read in brackets within brackets. Both are checked on that lab's page.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, expect

from forge.identity.apikeys import create_api_key
from forge.runtime.base import RuntimeFault
from forge.services.orchestrator.failure_reason import failure
from forge.services.spawn.app import build_app
from forge.store.db import Database
from forge.store.models import Scenario

from ..live_server import live_server
from .test_result_page import Graded, graded  # noqa: F401 (the fixture)

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


def _set_state(db: Database, scenario_id: str, state: str, reason: str | None = None) -> None:
    with db.session() as sess:
        row = sess.get(Scenario, scenario_id)
        assert row is not None
        row.state, row.state_reason = state, reason


def test_the_result_page_says_when_it_was_graded_in_the_learners_zone(
        graded: Graded, browser: Browser) -> None:  # noqa: F811 (the fixture)
    sid = graded.done.scenario_id
    db = graded.client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    key = create_api_key(db, "acme", "alice").plaintext
    with live_server(build_app(graded.settings)) as url:
        context = browser.new_context(timezone_id="Asia/Kolkata",
                                      viewport={"width": 390, "height": 844})
        try:
            page = context.new_page()
            page.goto(url + "/signin")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in with API key").click()
            # Waiting on the grading; the verdict comes in and the page reloads by itself.
            _set_state(db, sid, "grading")
            page.goto(f"{url}/lab/{sid}")
            expect(page).to_have_title(re.compile(r"^Grading · "))
            _set_state(db, sid, "completed")
            expect(page.locator("#result-h")).to_be_focused()
            expect(page).to_have_title(re.compile(r"^Not passed: 1 of 2 tasks done · "))
            page.reload()  # reloaded by the learner: the focus is the browser's to place
            expect(page.locator("#outcome")).to_be_visible()
            expect(page.locator("#result-h")).not_to_be_focused()
            # A lab that fails to start: its page, reloading by itself, said nothing of it
            # (the focus on the page, the title as while it was starting). Its note takes
            # the focus, and the title says it ended with no score.
            failing = graded.tampered.scenario_id
            _set_state(db, failing, "pending")
            page.goto(f"{url}/lab/{failing}")
            expect(page.locator("#state")).to_have_text("pending")
            # Offline while it starts: the page kept counting and then said "the platform
            # may be busy". It says the browser is offline, and stops saying so by itself.
            context.set_offline(True)
            expect(page.locator("#lab-offline")).to_be_visible()
            expect(page.locator("#progress-slow")).to_be_hidden()
            context.set_offline(False)
            expect(page.locator("#lab-offline")).to_be_hidden()
            # The reason the node gives reads once, in brackets after the state: it read
            # "failed (launch failed (the error is recorded for the operator))".
            reason, _ = failure(failing, "lab could not be created", RuntimeFault("bwrap: …"))
            _set_state(db, failing, "failed", reason)
            expect(page.locator("#ended-note")).to_be_focused()
            expect(page).to_have_title(re.compile(r"^Ended, no score · "))
            expect(page.locator(".statusbar p").first).to_have_text(
                "State: failed (lab could not be created: the error is recorded for the "
                "operator)")
            page.goto(f"{url}/lab/{sid}/result")
            moment = page.locator("#graded-at time")
            utc = moment.get_attribute("datetime")
            assert utc is not None
            local = datetime.fromisoformat(utc).astimezone(ZoneInfo("Asia/Kolkata"))
            shown = f"{local:%Y-%m-%d %H:%M}" + (f":{local:%S}" if local.second else "")
            expect(page.locator("#graded-at")).to_have_text(re.compile(
                rf"^Graded {shown} Asia/(Kolkata|Calcutta)\.$"))
            expect(moment).to_have_attribute("title", re.compile(r" UTC$"))
        finally:
            context.close()
