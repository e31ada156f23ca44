"""Every usable invite link of a class is listed, so the instructor can revoke it.

Before: a class could have any number of usable invite links, but `GET
/v1/cohorts/<id>/invites` and /teach list the newest 50 only, saying nothing of the rest.
With 52 links made, the two oldest were usable for their 14 days and in no list: a learner
taken out of the class joined again with one, and the instructor had no way to find its
id to revoke it. Now a class has at most 50 usable links: a 51st is refused (409
`cohort_invites_full`, no link made) until one is revoked or expires, so the list is
always the whole set. Real spawn_service (uvicorn), SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from forge.classroom import cohort_invites, cohorts
from forge.classroom.cohorts import Manager
from forge.store.models import CohortInvite

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from .test_cohort_caps import _keys, _signin


def test_no_usable_invite_link_is_left_out_of_the_list(
        make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn()
    db = env.state.ctx.db
    keys = _keys(db, {"ann": "instructor", "lea": "learner"})
    ann = Manager("acme", "ann", "instructor")
    cid = cohorts.create_cohort(db, ann, "Net 101").cohort_id
    cap = cohort_invites.MAX_LISTED_INVITES
    made = {cohort_invites.make_invite(db, ann, cid)[0].invite_id for _ in range(cap)}
    with env.client() as c:
        more = c.post(f"/v1/cohorts/{cid}/invites", json={"days": 14}, headers=keys["ann"])
        assert more.status_code == 409, more.text
        assert more.json()["error"] == "cohort_invites_full"
        assert "cohort_id" in more.json()["message"] and "revoke" in more.json()["message"]
        with db.read() as sess:  # nothing was made
            assert sess.scalar(select(func.count()).select_from(CohortInvite).where(
                CohortInvite.cohort_id == cid)) == cap

        listed = c.get(f"/v1/cohorts/{cid}/invites", headers=keys["ann"]).json()["invites"]
        assert {i["invite_id"] for i in listed} == made  # all of them, each revocable

        # Revoking one makes room; a revoked link no longer counts.
        gone = sorted(made)[0]
        assert c.delete(f"/v1/cohorts/{cid}/invites/{gone}",
                        headers=keys["ann"]).status_code == 200
        again = c.post(f"/v1/cohorts/{cid}/invites", json={"days": 14}, headers=keys["ann"])
        assert again.status_code == 201, again.text
        listed = c.get(f"/v1/cohorts/{cid}/invites", headers=keys["ann"]).json()["invites"]
        assert {i["invite_id"] for i in listed} == made - {gone} | {again.json()["invite_id"]}

        # An expired link no longer counts either.
        with db.session() as sess:
            old = sess.get(CohortInvite, sorted(made - {gone})[0])
            assert old is not None
            old.expires_at = datetime.now(UTC) - timedelta(minutes=1)
        assert c.post(f"/v1/cohorts/{cid}/invites", json={"days": 14},
                      headers=keys["ann"]).status_code == 201


def test_links_made_before_the_cap_are_all_listed(make_spawn: MakeSpawn  # noqa: F811
                                                  ) -> None:
    """A class that had more than 50 usable links when the cap came (made by an older
    Forge: the store holds them as they were) listed the newest 50, and the others stayed
    usable for up to 90 days in no list, so none of them could be found and revoked. Now
    the API lists every one, and /teach, which shows 50 a class, says there are more."""
    env = make_spawn()
    db = env.state.ctx.db
    keys = _keys(db, {"ann": "instructor"})
    ann = Manager("acme", "ann", "instructor")
    cid = cohorts.create_cohort(db, ann, "Net 101").cohort_id
    cap = cohort_invites.MAX_LISTED_INVITES
    now = datetime.now(UTC)
    with db.session() as sess:  # as an older Forge left them: past the cap
        for n in range(cap + 5):
            sess.add(CohortInvite(invite_id=f"inv-{n:016x}", cohort_id=cid, tenant_id="acme",
                                  token_sha256=f"{n:064x}", created_by="ann",
                                  created_at=now - timedelta(minutes=n),
                                  expires_at=now + timedelta(days=10), revoked_at=None))
    with env.client() as c:
        listed = c.get(f"/v1/cohorts/{cid}/invites", headers=keys["ann"]).json()["invites"]
        assert [i["invite_id"] for i in listed] == [f"inv-{n:016x}" for n in range(cap + 5)]
        _signin(c, env.url, keys["ann"])
        page = c.get("/teach").text
        assert page.count("Revoke invite link inv-") == cap
        assert "more usable invite links than these 50" in page, page
        assert f"GET /v1/cohorts/{cid}/invites" in page
