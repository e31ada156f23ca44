"""Attack: a sign-in key that leaked keeps its thief signed in after the learner replaces it.

"Lost it? Make a new one: the old key stops working at once" (the account page), and
`forge apikey revoke` ends a key. Before: only new sign-ins with the key were refused; a
browser that had already signed in with it kept its session cookie, which named no key, for
its 8 hours (and its terminals with it). After: a session opened with a key carries that
key's id and ends when the key is revoked; the learner's own browser, which made the new
key, is moved onto the new key and stays signed in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.identity.apikeys import create_api_key, revoke_api_key
from forge.store.db import Database

from .test_checkout_signin import ORIGIN
from .test_signin_back import device, field, key_sign_in, spawn_site

pytestmark = pytest.mark.usefixtures("sqlite_only_store")
KEY = re.compile(r"fgk_[0-9a-f]{16}_[A-Za-z0-9_-]{32,64}")


@pytest.fixture
def site(tmp_path: Path, nats: NatsServer) -> Iterator[TestClient]:
    with spawn_site(tmp_path / "storage", nats, "") as client:
        yield client


def _db(site: TestClient) -> Database:
    db: Database = site.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    return db


def signed_in(client: TestClient) -> bool:
    """Whether the browser's session cookie still opens the learner's pages and API."""
    page = client.get("/account").status_code
    api = client.get("/v1/assignments").status_code
    assert (page == 200) == (api == 200), (page, api)
    return page == 200


def test_a_new_sign_in_key_signs_out_the_browsers_of_the_old_one(site: TestClient) -> None:
    old = create_api_key(_db(site), "acme", "learner-7").plaintext
    owner, thief = device(site), device(site)
    assert key_sign_in(owner, old) == 303 and key_sign_in(thief, old) == 303
    assert signed_in(owner) and signed_in(thief)

    csrf = field(owner.get("/account").text, "csrf", "/account/key")
    made = owner.post("/account/key", data={"csrf": csrf}, headers={"origin": ORIGIN})
    assert made.status_code == 303

    assert not signed_in(thief)  # the old key's session ends with the key
    assert signed_in(owner)  # the browser that made the new key stays signed in
    shown = owner.post("/account/key/show", data={"csrf": field(
        owner.get("/account").text, "csrf", "/account/key/show")}, headers={"origin": ORIGIN})
    new = KEY.search(shown.text)
    assert new is not None and new.group(0) != old
    assert key_sign_in(thief, old) == 401
    assert key_sign_in(thief, new.group(0)) == 303 and signed_in(thief)


def test_an_operator_revoke_ends_the_sessions_the_key_opened(site: TestClient) -> None:
    issued = create_api_key(_db(site), "acme", "learner-8")
    kept = create_api_key(_db(site), "acme", "learner-8")  # the learner's other key
    leaked, other = device(site), device(site)
    assert key_sign_in(leaked, issued.plaintext) == 303
    assert key_sign_in(other, kept.plaintext) == 303
    assert revoke_api_key(_db(site), issued.key_id)
    assert not signed_in(leaked)
    assert signed_in(other)  # a session of another, live key is not touched
