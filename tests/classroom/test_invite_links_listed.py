"""An instructor can find and revoke the invite links of their class (probe DF).

Before: an invite link made on /teach showed its URL once and nothing else, and no route
listed a cohort's links, so `DELETE /v1/cohorts/<id>/invites/<invite_id>` needed an id the
instructor had never been shown. A learner taken out of the class ("Take out") joined
again at once with the link still valid (14 days), and the instructor could do nothing
about it: the docs said "revoke it and share a new one". Now /teach lists each class's
live links (id, who made it, until when) with a Revoke button, `GET
/v1/cohorts/<id>/invites` lists them for scripts, and taking out a learner who came by a
link says so. Another instructor's class's links are neither listed nor revocable.
Real spawn_service (uvicorn), SQLite and PostgreSQL.
"""

from __future__ import annotations

import re

from ..security.test_cohort_caps import _csrf, _keys
from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from .test_teach_roster_size import instructor_with_classes


def test_a_class_invite_link_is_listed_and_revocable_on_teach(
        make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn()
    origin = {"origin": env.url}
    with env.client() as c:
        ann, (a,) = instructor_with_classes(env, c, "Net A")
        keys = _keys(env.state.ctx.db, {"lea": "learner", "bob": "instructor"})
        made = c.post(f"/teach/cohorts/{a}/invite", headers=origin,
                      data={"csrf": _csrf(c, "/teach")})
        assert made.status_code == 303, made.text
        shown = c.get(made.headers["location"]).text
        code = re.search(r'id="invite-url"[^>]*value="[^"]*/join/(fgi_[^"]+)"', shown)
        assert code is not None
        joined = c.post("/v1/cohorts/join", json={"invite": code.group(1)},
                        headers=keys["lea"])
        assert joined.status_code == 200, joined.text

        out = c.post(f"/teach/cohorts/{a}/remove", headers=origin,
                     data={"csrf": _csrf(c, "/teach"), "subject": "lea"})
        said = c.get(out.headers["location"]).text
        assert "lea is no longer a learner of this class." in said
        assert "They came in by an invite link and can join again with it" in said

        listed = c.get(f"/v1/cohorts/{a}/invites", headers=ann)
        assert listed.status_code == 200, listed.text
        (invite,) = listed.json()["invites"]
        invite_id = invite["invite_id"]
        assert invite["created_by"] == "ann" and code.group(1) not in listed.text
        page = c.get("/teach").text
        assert f'action="/teach/cohorts/{a}/invites/{invite_id}/revoke"' in page

        # Another instructor of the tenant: not their class, so no such cohort.
        assert c.get(f"/v1/cohorts/{a}/invites", headers=keys["bob"]).status_code == 404
        assert c.delete(f"/v1/cohorts/{a}/invites/{invite_id}",
                        headers=keys["bob"]).status_code == 404

        revoked = c.post(f"/teach/cohorts/{a}/invites/{invite_id}/revoke", headers=origin,
                         data={"csrf": _csrf(c, "/teach")})
        assert revoked.status_code == 303, revoked.text
        after = c.get(revoked.headers["location"]).text
        assert f"Invite link {invite_id} revoked" in after
        assert f"/invites/{invite_id}/revoke" not in after
        assert c.get(f"/v1/cohorts/{a}/invites", headers=ann).json()["invites"] == []
        again = c.post("/v1/cohorts/join", json={"invite": code.group(1)},
                       headers=keys["lea"])
        assert again.status_code == 404 and again.json()["error"] == "invite_invalid"
        assert c.get(f"/v1/cohorts/{a}", headers=ann).json()["learners"] == []
