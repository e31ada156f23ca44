"""The lab page as a screen reader lists it (Playwright + Chromium, the accessibility tree).

A screen reader user moves through a page by its headings. The lab page's task text is
markdown whose own `# Title` and `## Your tasks` were rendered as an h1 and an h2: the page
had two level-1 headings (the lab's title twice), and "Your tasks" sat beside "Task",
"Hosts" and "Terminal" instead of inside the task. The task text now starts two levels
down, under the page's Task heading, and looks as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from forge.bus import NatsServer
from forge.config import load_settings
from forge.content import content_path
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.services.spawn.app import build_app

from ..live_server import live_server
from ..services.conftest import prod_environ

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # the spawn app on its SQLite store


@pytest.fixture
def spawn_url(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[str, str]]:
    """spawn_service alone (no lab node answers: a started lab stays "starting", which
    shows its task all the same) and a learner's key."""
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_TEMPLATE_DIR=str(content_path("templates")),
                                          ORCHESTRATOR_URL="http://127.0.0.1:9",
                                          SCOREBOARD_URL="http://127.0.0.1:9"))
    app = build_app(settings)
    with live_server(app) as url:
        db = app.state.spawn.ctx.db
        grant(db, "acme", "PRO", "reader")
        yield url, create_api_key(db, "acme", "reader").plaintext


def test_the_task_text_nests_under_the_lab_pages_own_headings(
        spawn_url: tuple[str, str], page: Page) -> None:
    url, key = spawn_url
    page.goto(url + "/signin")
    page.get_by_label("Your sign-in key or API key").fill(key)
    page.get_by_role("button", name="Sign in with API key or sign-in key").click()
    page.get_by_role("button", name="Start this lab: Find the server").click()
    expect(page).to_have_url(re.compile(r".*/lab/scn-[0-9a-f]{16}$"))
    expect(page.get_by_role("heading", name="Your tasks")).to_be_visible()

    # The headings as the accessibility tree gives them: (level, name), in page order.
    tree = page.locator("main").aria_snapshot()
    headings = [(int(level), name) for name, level in
                re.findall(r'- heading "([^"]*)" \[level=(\d)\]', tree)]
    assert [name for level, name in headings if level == 1] == [
        "Find the server lab " + page.url.rsplit("/", 1)[1] + " · netplus"], headings
    for (before, name_before), (after, name) in pairwise(headings):
        assert after <= before + 1, f"{name!r} (h{after}) follows {name_before!r} (h{before})"
    # The task's own title and sections sit inside the page's Task section.
    task = page.get_by_role("region", name="Task")
    expect(task.get_by_role("heading", name="Find the server", level=3)).to_be_visible()
    expect(task.get_by_role("heading", name="Your tasks", level=4)).to_be_visible()
    # ...and keep their look: the task's title still reads larger than its sections.
    sizes = [float(task.get_by_role("heading", name=n).evaluate(
        "h => getComputedStyle(h).fontSize").removesuffix("px"))
        for n in ("Find the server", "Your tasks")]
    assert sizes[0] > sizes[1], sizes
