"""Attack: another site makes a signed-in learner's browser reveal hints or run checks.

The lab page's own forms are same-origin and CSRF-checked, but the JSON API beside them
(`POST /v1/scenarios/<id>/hints/<hint>`, `POST /v1/scenarios/<id>/checks/<criterion>`)
also accepts the session cookie, and used to accept it from any origin: a page elsewhere
(a same-site subdomain, a browser that sends the cookie cross-site) could spend the
learner's score on hints or their check budget. Now a cookie caller's POST must come from a
page of this site (403 `cross_site_request`, nothing recorded); API-key callers, who send
their credential themselves, are unaffected.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select

from forge.store.models import HintReveal, TaskCheckRun

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401  (fixture)
from ..spawn.hinted import HINT_TEXTS, hinted_spawn, running_lab

EVIL = "https://evil.example"


def test_cookie_posts_to_the_api_must_come_from_this_site(
    make_spawn: MakeSpawn, tmp_path: Path  # noqa: F811
) -> None:
    env = hinted_spawn(make_spawn, tmp_path)
    sid, headers = running_lab(env)

    def counts() -> tuple[int, int]:
        with env.state.ctx.db.read() as sess:
            return (int(sess.scalar(select(func.count()).select_from(HintReveal)) or 0),
                    int(sess.scalar(select(func.count()).select_from(TaskCheckRun)) or 0))

    with httpx.Client(base_url=env.url, timeout=20) as browser:
        signed = browser.post("/signin", data={"api_key": headers["x-api-key"]},
                              headers={"origin": env.url})
        assert signed.status_code == 303 and browser.cookies
        for origin in ({"origin": EVIL}, {"referer": EVIL + "/page"}, {}):
            hint = browser.post(f"/v1/scenarios/{sid}/hints/h1", headers=origin)
            assert hint.status_code == 403, hint.text
            assert hint.json()["error"] == "cross_site_request"
            assert HINT_TEXTS[0] not in hint.text
            check = browser.post(f"/v1/scenarios/{sid}/checks/saved-page", headers=origin)
            assert check.status_code == 403 and check.json()["error"] == "cross_site_request"
        assert counts() == (0, 0)

        same = browser.post(f"/v1/scenarios/{sid}/hints/h1", headers={"origin": env.url})
        assert same.status_code == 200 and same.json()["text"] == HINT_TEXTS[0]

    with httpx.Client(base_url=env.url, timeout=20, headers=headers) as api:
        by_key = api.post(f"/v1/scenarios/{sid}/hints/h2")  # no Origin: not a browser
        assert by_key.status_code == 200 and by_key.json()["text"] == HINT_TEXTS[1]
    assert counts() == (2, 0)
