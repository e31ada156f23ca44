"""Attack: read a hint's text without paying for it.

Before, the lab page carried every hint's text in its HTML (collapsed `<details>`), so "view
source" revealed them all for free. Now a hint's text leaves spawn_service only after its
reveal is recorded (and so charged): not in the page, not in any JSON the page or the API
serves. The page's Reveal form is CSRF-protected like every other form: a cross-site post
reveals (and charges) nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from sqlalchemy import func, select

from forge.store.models import HintReveal

from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn  # noqa: F401  (fixture)
from ..spawn.hinted import HINT_TEXTS, hinted_spawn, running_lab


def _browser(env: SpawnEnv, headers: dict[str, str]) -> httpx.Client:
    """A signed-in browser session (same-origin form posts)."""
    client = httpx.Client(base_url=env.url, timeout=20, headers={"origin": env.url})
    signed = client.post("/signin", data={"api_key": headers["x-api-key"]})
    assert signed.status_code == 303
    return client


def _reveals(env: SpawnEnv) -> int:
    with env.state.ctx.db.read() as sess:
        return int(sess.scalar(select(func.count()).select_from(HintReveal)) or 0)


def _everything_served(client: httpx.Client, sid: str) -> str:
    return "\n".join(client.get(path).text for path in (
        f"/lab/{sid}", f"/lab/{sid}/status", f"/v1/scenarios/{sid}",
        f"/v1/scenarios/{sid}/hints"))


def test_no_hint_text_reaches_the_browser_before_its_recorded_reveal(
    make_spawn: MakeSpawn, tmp_path: Path  # noqa: F811
) -> None:
    env = hinted_spawn(make_spawn, tmp_path)
    sid, headers = running_lab(env)
    browser = _browser(env, headers)
    try:
        served = _everything_served(browser, sid)
        assert "Reveal hint 1" in served and "costs 25 % of the score" in served
        for text in HINT_TEXTS:
            assert text not in served

        # A cross-site post (no CSRF token, or another origin) reveals nothing.
        forged = browser.post(f"/lab/{sid}/hints/h1", data={},
                              headers={"accept": "application/json"})
        assert forged.status_code == 403 and HINT_TEXTS[0] not in forged.text
        found = re.search(r'name="csrf" value="([^"]+)"', browser.get(f"/lab/{sid}").text)
        assert found is not None
        other_site = browser.post(f"/lab/{sid}/hints/h1", data={"csrf": found.group(1)},
                                  headers={"origin": "https://evil.example"})
        assert other_site.status_code == 403 and HINT_TEXTS[0] not in other_site.text
        assert _reveals(env) == 0

        # The page's own form: recorded, then shown; the other hints stay hidden.
        shown = browser.post(f"/lab/{sid}/hints/h1", data={"csrf": found.group(1)},
                             headers={"accept": "application/json"})
        assert shown.status_code == 200 and HINT_TEXTS[0] in shown.json()["html"]
        assert _reveals(env) == 1
        served = _everything_served(browser, sid)
        assert HINT_TEXTS[0] in served
        assert HINT_TEXTS[1] not in served and HINT_TEXTS[2] not in served
    finally:
        browser.close()
