"""Use and attack: what /teach says after a form, carried across its redirect.

Every /teach form ends in a 303 back to the page, so a reload shows the page again and
never sends the form twice (before, a reload made another invite link and a removal
came back as "not a learner"). The line the form earned travels in a cookie sealed for
the instructor who sent it: shown once (a new invite link too), never in another
instructor's page (a copied cookie), and nothing from a changed or expired one.
Real spawn_service (uvicorn), real nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import time

from forge.services.spawn.web import teach_notice
from forge.services.spawn.web.sealed_cookie import seal

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from .test_cohort_caps import _class_of, _csrf, _keys, _signin


def test_a_form_redirects_and_its_line_is_shown_once_to_its_sender(
    make_spawn: MakeSpawn,  # noqa: F811
) -> None:
    env = make_spawn()
    keys = _keys(env.state.ctx.db, {"ann": "instructor", "bob": "instructor"})
    origin = {"origin": env.url}
    with env.client() as c:
        a = _class_of(c, keys["ann"], ["lea", "leo"])
        _signin(c, env.url, keys["ann"])
        token = _csrf(c, "/teach")

        made = c.post(f"/teach/cohorts/{a}/invite", headers=origin, data={"csrf": token})
        assert made.status_code == 303 and made.headers["location"] == "/teach"
        first = c.get("/teach").text
        assert f"{env.url}/join/" in first
        assert f"{env.url}/join/" not in c.get("/teach").text  # shown once

        out = c.post(f"/teach/cohorts/{a}/remove", headers=origin,
                     data={"csrf": token, "subject": "leo"})
        assert out.status_code == 303
        sealed = out.cookies[teach_notice.TEACH_COOKIE]
        # Sealed, not merely signed: the line is not in the cookie, nor its bytes (random
        # base64 may spell "leo").
        assert "no longer" not in sealed
        assert b"no longer a learner" not in base64.urlsafe_b64decode(sealed.strip('"'))
        assert "leo is no longer a learner of this class." in c.get("/teach").text
        again = c.get("/teach")
        assert "no longer a learner" not in again.text
        assert again.status_code == 200

        # Ann's line, copied into Bob's browser, says nothing there.
        _signin(c, env.url, keys["bob"])
        c.cookies.set(teach_notice.TEACH_COOKIE, sealed)
        bobs = c.get("/teach")
        assert bobs.status_code == 200 and "leo is no longer" not in bobs.text

        # A changed cookie, or one past its time, shows nothing and breaks nothing.
        _signin(c, env.url, keys["ann"])
        changed = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
        c.cookies.set(teach_notice.TEACH_COOKIE, changed)
        page = c.get("/teach")
        assert page.status_code == 200 and "leo is no longer" not in page.text
        old = seal(env.state.settings, teach_notice._PURPOSE, b"acme\x00ann",
                   json.dumps({"notice": "stale line", "invite": None,
                               "until": int(time.time()) - 1}).encode())
        c.cookies.set(teach_notice.TEACH_COOKIE, old)
        assert "stale line" not in c.get("/teach").text
        fresh = seal(env.state.settings, teach_notice._PURPOSE, b"acme\x00ann",
                     json.dumps({"notice": "fresh line", "invite": None,
                                 "until": int(time.time()) + 60}).encode())
        c.cookies.set(teach_notice.TEACH_COOKIE, fresh)
        assert "fresh line" in c.get("/teach").text  # the same seal, in time: shown
