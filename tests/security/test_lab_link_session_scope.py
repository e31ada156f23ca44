"""Attack: turn one lab's access link into the learner's whole account.

Opening a lab's access link (`/v1/access/<scenario>?token=…`) signs the browser in with a
session limited to that lab: whoever holds the link (a shared screen, a forwarded
message, a phone left open) may work in that lab and nothing else. Only the scenario
routes checked the limit: with the link's session anyone could start labs as the
learner (spending their graded attempts and quota), list their tracks and assignments,
join cohorts in their name, or buy a receipt that signs in as them. Each of those now
answers 403 `lab_session_only` (checkout treats the session as nobody signed in), takes
nothing, and the lab itself still works.

A link's session also ends with the API key (or key-opened session) that started the lab:
its session named no key, so a thief of a leaked key who started a lab with it kept that
lab (its terminal, its Submit, in the learner's name) for 8 hours after the learner or the
operator revoked the key, and a link not opened yet still opened one. And a link never
replaces the session of another learner signed in in the browser that opens it (409
`signed_in_as_another`, the link not used up): one learner sent another's link worked on
in a lab not theirs, believing it theirs, while its recordings kept what they typed.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select

from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key, revoke_api_key
from forge.store.models import QuotaSlot, RateCounter, Scenario

from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn, spawn_env  # noqa: F401
from ..spawn.test_spawn_api import count, key_for, spawn


def _rate_used(env: SpawnEnv) -> int:
    with env.state.ctx.db.session() as sess:
        return int(sess.scalar(select(func.coalesce(func.sum(RateCounter.count), 0))) or 0)


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_lab_link_session_can_use_its_lab_and_nothing_of_the_account(
        spawn_env: SpawnEnv) -> None:  # noqa: F811
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    sid, link = _link_session(spawn_env)
    before = (count(spawn_env, Scenario), count(spawn_env, QuotaSlot), _rate_used(spawn_env))
    with spawn_env.client() as holder:  # whoever opened the link
        assert holder.get(link).status_code == 303
        same_site = {"origin": spawn_env.url}
        assert holder.get(f"/v1/scenarios/{sid}").status_code == 200  # its own lab: yes
        refused = [
            holder.post("/v1/spawn", json={"track": "netplus"}, headers=same_site),
            holder.get("/v1/tracks"),
            holder.get("/v1/assignments"),
            holder.post("/v1/cohorts/join", json={"invite": "fgi_" + "a" * 32},
                        headers=same_site),
        ]
        for resp in refused:
            assert resp.status_code == 403, (resp.request.url, resp.text)
            assert resp.json()["error"] == "lab_session_only"
        after = (count(spawn_env, Scenario), count(spawn_env, QuotaSlot),
                 _rate_used(spawn_env))
        assert after == before  # nothing started, reserved or counted

        # alice's key leaks; its thief starts a lab with it and opens its link, and keeps a
        # second link unopened. The key is revoked: neither opens the lab any more.
        leaked = create_api_key(spawn_env.state.ctx.db, "acme", "alice")
        thief_sid, thief_link = _link_session(spawn_env, {"x-api-key": leaked.plaintext})
        _, unopened = _link_session(spawn_env, {"x-api-key": leaked.plaintext})
        # bob, signed in, is sent the thief's link: it does not sign his browser in as
        # alice (he would work on in her lab, whose recordings she reads); it stays unused.
        grant(spawn_env.state.ctx.db, "globex", "PRO")
        _, bob_link = _link_session(spawn_env, key_for(spawn_env, "globex", "bob"))
        with spawn_env.client() as bob:
            assert bob.get(bob_link).status_code == 303
            sent = bob.get(thief_link)
            assert sent.status_code == 409, sent.text
            assert sent.json()["error"] == "signed_in_as_another"
            assert "set-cookie" not in sent.headers
        with spawn_env.client() as thief:
            assert thief.get(thief_link).status_code == 303
            assert thief.get(f"/v1/scenarios/{thief_sid}").status_code == 200
            assert revoke_api_key(spawn_env.state.ctx.db, leaked.key_id) is not None
            ended = thief.get(f"/v1/scenarios/{thief_sid}")
            assert ended.status_code == 401, ended.text
            opened = thief.get(unopened)
            assert opened.status_code == 401, opened.text
            assert opened.json()["error"] == "key_revoked"
        assert holder.get(f"/v1/scenarios/{sid}").status_code == 200  # another key's: kept

    # carol's browser signed in with a key that was then revoked: her own lab's link signs
    # it in to that lab afresh (before: the link was used up, no cookie was set, and she
    # landed signed out with the link spent).
    signin_key = create_api_key(spawn_env.state.ctx.db, "acme", "carol")
    with spawn_env.client(headers={"origin": spawn_env.url}) as browser:
        signed = browser.post("/signin", data={"api_key": signin_key.plaintext})
        assert signed.status_code == 303, signed.text
        assert revoke_api_key(spawn_env.state.ctx.db, signin_key.key_id) is not None
        own_sid, own_link = _link_session(spawn_env, key_for(spawn_env, "acme", "carol"))
        opened = browser.get(own_link)
        assert opened.status_code == 303 and "set-cookie" in opened.headers, opened.headers
        assert browser.get(f"/v1/scenarios/{own_sid}").status_code == 200


def _link_session(env: SpawnEnv, key: dict[str, str] | None = None) -> tuple[str, str]:
    """(scenario id, access link path?query) of a lab alice started with an API key of hers
    (``key``, else a new one)."""
    with env.client() as client:
        created = spawn(client, key or key_for(env)).json()
    link = urlparse(created["access_url"])
    return created["scenario_id"], f"{link.path}?{link.query}"


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_lab_link_session_buys_as_nobody(make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn("dev")  # the stub checkout exists only outside production
    grant(env.state.ctx.db, "acme", "PRO")
    _, link = _link_session(env)
    with env.client() as holder:
        assert holder.get(link).status_code == 303
        same_site = {"origin": env.url}
        as_alice = holder.post("/v1/billing/checkout", headers=same_site,
                               json={"plan": "PRO", "tenant_id": "acme", "subject": "alice"})
        assert as_alice.status_code == 401, as_alice.text  # not signed in as alice
        bought = holder.post("/v1/billing/checkout", headers=same_site,
                             json={"plan": "PRO", "tenant_id": "acme"})
    assert bought.status_code == 201, bought.text
    assert bought.json()["new_subject"] is True and bought.json()["subject"] != "alice"
