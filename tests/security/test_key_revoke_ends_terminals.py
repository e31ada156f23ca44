"""Attack: keep a shell on the learner's lab with a sign-in key that leaked, after the
learner replaced the key ("Lost it? Make a new one: the old key stops working at once").

Before: the new key ended the browser sessions the old key had opened (their cookie got 401),
but a terminal one of them had already opened was a socket past the cookie check: it stayed
a live shell on the learner's lab until its idle limit. Now making a new key on the account
page ends the learner's shells on their labs' nodes, as a sign-out does, and the old
session's cookie opens no new one.

Real spawn_service + orchestrator (uvicorn), nats-server, SQLite and the local lab runtime
(the `lab` fixture of test_terminal_cap).
"""

from __future__ import annotations

import re

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from forge.identity.apikeys import create_api_key

from .test_terminal_cap import Lab, closed_with, lab, round_trip
from .test_terminal_signout import _cookie_terminal

__all__ = ["lab"]  # the module-scoped live platform
pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]


def _csrf(html: str) -> str:
    form = re.search(r'action="/account/key"(.*?)</form>', html, re.S)
    assert form is not None
    found = re.search(r'name="csrf" value="([^"]*)"', form.group(1))
    assert found is not None
    return found.group(1)


def test_a_new_key_ends_the_terminal_the_old_keys_browser_holds(lab: Lab) -> None:
    sid = lab.spawn_running(lab.learner("zoe"))
    old = create_api_key(lab.orch.ctx.db, "acme", "zoe").plaintext
    origin = {"origin": lab.spawn_url}
    with httpx.Client(base_url=lab.spawn_url, timeout=60) as thief, \
            httpx.Client(base_url=lab.spawn_url, timeout=60) as owner:
        for browser in (thief, owner):
            assert browser.post("/signin", data={"api_key": old},
                                headers=origin).status_code == 303
        stolen = thief.cookies["forge_session"]
        with _cookie_terminal(lab, sid, stolen) as tab:
            round_trip(tab, "before")
            made = owner.post("/account/key", headers=origin,
                              data={"csrf": _csrf(owner.get("/account").text)})
            assert made.status_code == 303, made.text
            assert thief.get(f"/v1/scenarios/{sid}").status_code == 401
            closed_with(tab)  # the shell is gone, not only the cookie
        assert lab.held(sid) == 0
        with pytest.raises(InvalidStatus):
            _cookie_terminal(lab, sid, stolen)
        # The owner's browser, moved onto the new key, opens its terminal again.
        with _cookie_terminal(lab, sid, owner.cookies["forge_session"]) as again:
            round_trip(again, "after")
