"""A lab whose time runs out while its page is open (Playwright + Chromium, the real
platform, the orchestrator's reaper passing every second).

The page counted down to 0 min 0 s, then came again with the result: it said "State:
completed" and a score, exactly as after Submit. Nothing said the lab had ended because its
time ran out (the learner had not pressed Submit, and might think their work was lost or
submitted by mistake). The page now says so, above the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from forge.store.models import Scenario

from .conftest import WebPlatform, running_web_platform

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


@pytest.fixture(scope="module")
def web_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    with running_web_platform(tmp_path_factory.mktemp("web-time-out"),
                              reaper_interval_s=1) as platform:
        yield platform


@pytest.mark.root
def test_a_lab_whose_time_runs_out_says_so_with_its_result(web_platform: WebPlatform,
                                                           page: Page) -> None:
    sid = web_platform.start_lab(page, web_platform.learner_key("acme", "time-out"))
    with web_platform.db.session() as sess:  # its time is up
        row = sess.get(Scenario, sid)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    expect(page.locator("#state")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#score-value")).to_be_visible(timeout=120_000)
    expect(page.locator("#ended-by-time")).to_have_text(
        "Your lab's time ran out, so it was graded as it stood.")


@pytest.mark.root
def test_a_submitted_lab_does_not_say_its_time_ran_out(web_platform: WebPlatform,
                                                       page: Page) -> None:
    web_platform.start_lab(page, web_platform.learner_key("acme", "submitted"))
    page.get_by_role("button", name="Submit for grading").click()
    page.get_by_role("button", name="Submit and end the lab").click()
    expect(page.locator("#score-value")).to_be_visible(timeout=120_000)
    expect(page.locator("#ended-by-time")).to_have_count(0)
