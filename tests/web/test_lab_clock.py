"""The lab page's countdown does not depend on the learner's own clock (Playwright + Chromium).

A device whose clock is off (a wrong time zone on a dual-boot laptop, a flat battery) read
the lab's deadline against its own "now": 50 minutes fast, a fresh 45-minute lab showed
"0 min 0 s", said it was about to end and offered Extend. The page counts down from the
server's seconds left instead, and an extension moves that deadline by what it added.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from forge.store.models import Scenario

from .conftest import WebPlatform, running_web_platform

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


@pytest.fixture(scope="module")
def web_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPlatform]:
    with running_web_platform(tmp_path_factory.mktemp("web-clock")) as platform:
        yield platform


def minutes_shown(page: Page) -> int:
    found = re.match(r"^(\d+) min", page.locator("#remaining").inner_text())
    assert found is not None
    return int(found.group(1))


@pytest.mark.root
def test_a_device_clock_50_minutes_fast_still_shows_the_labs_real_time_left(
    web_platform: WebPlatform, page: Page
) -> None:
    page.clock.install(time=datetime.now(UTC) + timedelta(minutes=50))
    sid = web_platform.start_lab(page, web_platform.learner_key("acme", "skewed"))
    with web_platform.db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None and row.expires_at is not None
        expires = row.expires_at.replace(tzinfo=UTC)
        left = int((expires - datetime.now(UTC)).total_seconds()) // 60
    assert left > 20  # the lab has far more than 10 minutes left...
    # ...and the page says so (it said 0 min, warned of the end and opened Extend)
    expect(page.locator("#remaining")).to_have_text(re.compile(rf"^({left}|{left - 1}) min"))
    expect(page.locator("#time-warning")).to_be_hidden()
    expect(page.get_by_role("button", name="Extend by 15 min")).to_be_disabled()
    expect(page.locator("#extend-when")).to_contain_text("Available in")

    # An extension (another tab, another device) moves the countdown by what it added.
    before = minutes_shown(page)
    with web_platform.db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None and row.expires_at is not None
        row.expires_at = row.expires_at + timedelta(minutes=15)
    expect(page.locator("#remaining")).to_have_text(
        re.compile(rf"^({before + 15}|{before + 14}) min"))
