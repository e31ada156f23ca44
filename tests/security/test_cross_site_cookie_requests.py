"""Attack: a page of another (same-site) origin rides the learner's session cookie to end,
extend or destroy their lab, start a new one or buy with their identity.

Only the hint and check POSTs used to ask a cookie caller for a same-origin request; submit
(grades and ends the lab), extend, DELETE, `/v1/spawn` and `/v1/billing/checkout` accepted
the cookie from anywhere (SameSite=Strict does not stop a same-site subdomain). Now the
caller resolution itself refuses an unsafe method authenticated by the cookie unless Origin
(or, without it, Sec-Fetch-Site: same-origin) is this site: 403 `cross_site_request`, and
nothing changes. API-key callers, who send their credential themselves, are unaffected.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from forge.store.models import Scenario

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401  (fixture)
from ..spawn.hinted import hinted_templates, running_lab

EVIL = {"origin": "https://evil.example"}
CROSS_SITE = {"sec-fetch-site": "cross-site"}
SAME_SITE_NO_ORIGIN = {"sec-fetch-site": "same-site"}


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite_only", marks=pytest.mark.sqlite_only)])
def db_url(tmp_path: Path) -> str:
    """The origin check is decided before the store is reached: SQLite only."""
    return f"sqlite:///{tmp_path / 'forge.db'}"


def test_cookie_requests_from_elsewhere_change_nothing(
    make_spawn: MakeSpawn, tmp_path: Path  # noqa: F811
) -> None:
    env = make_spawn("dev", BILLING_MODE="stub",
                     FORGE_TEMPLATE_DIR=str(hinted_templates(tmp_path)))
    sid, key_headers = running_lab(env)

    def snapshot() -> tuple[int, str, object]:
        with env.state.ctx.db.read() as sess:
            row = sess.get(Scenario, sid)
            assert row is not None
            count = int(sess.scalar(select(func.count()).select_from(Scenario)) or 0)
            return count, row.state, row.expires_at

    before = snapshot()
    ours = {"origin": env.url}
    with httpx.Client(base_url=env.url, timeout=20) as browser:
        signed = browser.post("/signin", data={"api_key": key_headers["x-api-key"]},
                              headers=ours)
        assert signed.status_code == 303 and browser.cookies
        for bad in (EVIL, CROSS_SITE, SAME_SITE_NO_ORIGIN, {**CROSS_SITE, **ours}):
            answers = [
                browser.post(f"/v1/scenarios/{sid}/submit", headers=bad),
                browser.post(f"/v1/scenarios/{sid}/extend", json={"minutes": 5}, headers=bad),
                browser.delete(f"/v1/scenarios/{sid}", headers=bad),
                browser.post("/v1/spawn", json={"track": "netplus"}, headers=bad),
                browser.post("/v1/billing/checkout", json={"plan": "PRO"}, headers=bad),
            ]
            for answer in answers:
                assert answer.status_code == 403, (bad, answer.request.url, answer.text)
                assert answer.json()["error"] == "cross_site_request"
                assert "this site" in answer.json()["message"]
        assert snapshot() == before  # still running, not extended, no new lab

        # Reading with the cookie needs no Origin; the browser's own page is let through.
        assert browser.get(f"/v1/scenarios/{sid}").status_code == 200
        submitted = browser.post(f"/v1/scenarios/{sid}/submit", headers=ours)
        assert submitted.status_code == 202, submitted.text
        fetched = browser.post(f"/v1/scenarios/{sid}/submit",
                               headers={"sec-fetch-site": "same-origin"})
        assert fetched.status_code == 202, fetched.text
        bought = browser.post("/v1/billing/checkout", json={"plan": "PRO"}, headers=ours)
        assert bought.status_code == 201 and bought.json()["subject"] == "alice", bought.text

    with httpx.Client(base_url=env.url, timeout=20, headers=key_headers) as api:
        started = api.post("/v1/spawn", json={"track": "netplus", "request_id": "by-key-1"})
        assert started.status_code in (201, 409), started.text  # no Origin: not a browser
        assert started.json().get("error") != "cross_site_request"
        submit = api.post(f"/v1/scenarios/{sid}/submit")
        assert submit.status_code == 202, submit.text
        by_key = api.post("/v1/billing/checkout", json={"plan": "PRO"})
        assert by_key.status_code == 201 and by_key.json()["subject"] == "alice"

