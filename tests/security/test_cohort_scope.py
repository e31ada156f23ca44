"""Attack: reading or changing a cohort one does not manage — an instructor of another
cohort of the same tenant, an instructor of another tenant, a learner — and joining with an
invite link of another tenant or one that was revoked; a CSV with a bad line enrolling part
of a roster.

Before: no cohorts existed. After: managers only (the cohort's instructors, the tenant's
operators); another cohort's instructor and any other tenant get 404 (no existence oracle,
before the body is even parsed), a learner 403; an invite link works only in its tenant and
until revoked; a bad CSV line is named and nobody is enrolled. Real spawn_service (uvicorn),
real nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

import re

from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401

CSV = {"content-type": "text/csv"}


def test_cohorts_are_scoped_to_their_managers(make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn()
    db = env.state.ctx.db
    people = {"ann": ("acme", "instructor"), "bob": ("acme", "instructor"),
              "olga": ("acme", "operator"), "lea": ("acme", "learner"),
              "leo": ("acme", "learner"), "leon": ("acme", "learner"), "gina": ("globex", "instructor"),
              "gus": ("globex", "learner")}
    keys = {}
    for who, (tenant, role) in people.items():
        record_role(db, tenant, who, role, source="test")
        keys[who] = {"x-api-key": create_api_key(db, tenant, who).plaintext}

    with env.client() as c:
        a = c.post("/v1/cohorts", json={"name": "Net A"}, headers=keys["ann"]).json()["cohort_id"]
        b = c.post("/v1/cohorts", json={"name": "Net B"}, headers=keys["bob"]).json()["cohort_id"]
        assert [x["cohort_id"] for x in c.get("/v1/cohorts", headers=keys["bob"]).json()[
            "cohorts"]] == [b]
        assert {x["cohort_id"] for x in c.get("/v1/cohorts", headers=keys["olga"]).json()[
            "cohorts"]} == {a, b}
        assert c.get(f"/v1/cohorts/{a}", headers=keys["olga"]).status_code == 200

        # Another cohort's instructor, another tenant's: 404 on every read and write.
        for outsider in ("bob", "gina"):
            h = keys[outsider]
            attempts = [
                c.get(f"/v1/cohorts/{a}", headers=h),
                c.get(f"/v1/cohorts/{a}/assignments", headers=h),
                c.post(f"/v1/cohorts/{a}/invites", json={}, headers=h),
                c.post(f"/v1/cohorts/{a}/assignments", headers=h, json={
                    "template_id": "netplus", "opens_at": "2026-01-01T00:00:00Z",
                    "closes_at": "2027-01-01T00:00:00Z"}),
                # a bad roster too: scope is checked first, so nothing about the file leaks
                c.post(f"/v1/cohorts/{a}/enrolments", content="x/../y\n",
                       headers={**h, **CSV}),
            ]
            assert [(r.status_code, r.json()["error"]) for r in attempts] == [
                (404, "cohort_not_found")] * 5, outsider
        # A learner of the tenant: not allowed to manage any cohort.
        lea = keys["lea"]
        assert c.get(f"/v1/cohorts/{a}", headers=lea).status_code == 403
        # ...and is not told which cohort ids exist: an unknown one is the same 403.
        for probe in (f"/v1/cohorts/{a}", "/v1/cohorts/coh-0000000000000000"):
            asked = c.get(probe, headers=lea)
            assert (asked.status_code, asked.json()["error"]) == (403, "instructor_required")
        assert c.get("/v1/cohorts", headers=lea).status_code == 403
        made = c.post("/v1/cohorts", json={"name": "Mine"}, headers=lea)
        assert (made.status_code, made.json()["error"]) == (403, "instructor_required")

        # A bad CSV line is named; nobody of the file is enrolled.
        bad = c.post(f"/v1/cohorts/{a}/enrolments", content="subject\nlea\nleo;rm -rf\n",
                     headers={**keys["ann"], **CSV})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"] == "csv_invalid"
        assert bad.json()["details"][0]["line"] == 3
        assert c.get(f"/v1/cohorts/{a}", headers=keys["ann"]).json()["learners"] == []

        # Invite links: its tenant only, many learners, until revoked.
        # Its url never names the site the caller's Host did: relative, no public URL set.
        invite = c.post(f"/v1/cohorts/{a}/invites", json={"days": 7},
                        headers={**keys["ann"], "host": "evil.example"})
        assert invite.status_code == 201, invite.text
        code, invite_id = invite.json()["invite"], invite.json()["invite_id"]
        assert invite.json()["url"] == f"/join/{code}"
        other = c.post("/v1/cohorts/join", json={"invite": code}, headers=keys["gus"])
        assert (other.status_code, other.json()["error"]) == (404, "invite_invalid")
        joined = c.post("/v1/cohorts/join", json={"invite": code}, headers=lea)
        assert joined.json() == {"cohort_id": a, "name": "Net A"}, joined.text
        # The link's page: signed out, sign in first; signed in, a Join button (a GET alone
        # enrols nobody), and the POST needs the session's CSRF token.
        assert c.get(f"/join/{code}").headers["location"] == f"/signin?next=/join/{code}"
        assert c.post("/signin", data={"api_key": keys["leo"]["x-api-key"]},
                      headers={"origin": env.url}).status_code == 303
        shown = c.get(f"/join/{code}")
        assert shown.status_code == 200 and "Join Net A" in shown.text
        assert [m["subject"] for m in c.get(f"/v1/cohorts/{a}", headers=keys["ann"]).json()[
            "learners"]] == ["lea"]
        assert c.post(f"/join/{code}", data={"csrf": "forged"},
                      headers={"origin": env.url}).status_code == 403
        csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text)
        assert csrf is not None
        web = c.post(f"/join/{code}", data={"csrf": csrf.group(1)}, headers={"origin": env.url})
        assert web.headers["location"] == "/tracks#assignments"
        c.cookies.clear()
        # A learner in the cohort still manages nothing of it.
        assert c.get(f"/v1/cohorts/{a}", headers=lea).status_code == 403
        revoked = c.delete(f"/v1/cohorts/{a}/invites/{invite_id}", headers=keys["ann"])
        assert revoked.status_code == 200
        late = c.post("/v1/cohorts/join", json={"invite": code}, headers=keys["leon"])
        assert late.status_code == 404
        assert c.get(f"/v1/cohorts/{a}", headers=keys["ann"]).json()["learners"] == [
            {"subject": "lea", "via": "invite"}, {"subject": "leo", "via": "invite"}]

        # The /teach page keeps the same rules: another instructor's form post is 404, a
        # bad pasted roster names its line and adds nobody, a forged CSRF token is 403, and
        # learners are refused the page.
        origin = {"origin": env.url}
        for who, expected in (("bob", 404), ("ann", 422)):
            c.cookies.clear()
            assert c.post("/signin", data={"api_key": keys[who]["x-api-key"]},
                          headers=origin).status_code == 303
            csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/teach").text)
            assert csrf is not None
            bad = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                         data={"csrf": csrf.group(1), "roster": "leon\nnot an id\n"})
            assert bad.status_code == expected, (who, bad.text)
        assert "line 2" in bad.text
        forged = c.post(f"/teach/cohorts/{a}/roster", data={"csrf": "x", "roster": "leon"},
                        headers=origin)
        assert forged.status_code == 403
        assert len(c.get(f"/v1/cohorts/{a}", headers=keys["ann"]).json()["learners"]) == 2
        # An attempts count that is no small whole number is the form's 422 naming the
        # field, and nothing is assigned.
        for attempts in ("9" * 4000, "1e3", "-1", "٣"):
            huge = c.post(f"/teach/cohorts/{a}/assignments", headers=origin, data={
                "csrf": csrf.group(1), "template_id": "netplus", "attempts_allowed": attempts,
                "opens_at": "2026-12-01T09:00", "closes_at": "2026-12-02T09:00"})
            assert huge.status_code == 422 and "attempts_allowed" in huge.text, huge.text[:200]
        assert c.get(f"/v1/cohorts/{a}", headers=keys["ann"]).json()["assignments"] == []
        c.cookies.clear()
        assert c.post("/signin", data={"api_key": lea["x-api-key"]},
                      headers=origin).status_code == 303
        assert c.get("/teach").status_code == 403

        # Added by a manager of the cohort, bob manages it too; a learner added is still a
        # learner (the role comes from the tenant, not the cohort).
        for added in ("bob", "lea"):
            # lea is a learner of the class: made an instructor, she leaves its grades,
            # so only when the caller says so (review CD).
            ok = c.post(f"/v1/cohorts/{a}/instructors",
                        json={"subject": added, "confirm": added == "lea"},
                        headers=keys["ann"])
            assert ok.status_code == 200, ok.text
            # The answer says when the person has no instructor role (probe AT: a typo
            # silently named whoever later takes that id).
            assert ("warning" in ok.json()) == (added == "lea"), ok.text
        assert c.get(f"/v1/cohorts/{a}", headers=keys["bob"]).status_code == 200
        assert c.get(f"/v1/cohorts/{a}", headers=lea).status_code == 403
        gina = c.post(f"/v1/cohorts/{a}/instructors", json={"subject": "gina"},
                      headers=keys["gina"])
        assert gina.status_code == 404
        # Taking an instructor off (review CD: a past teaching assistant kept the class for
        # ever): not by another tenant's instructor or a learner; by a manager, yes; never
        # the last one.
        path = f"/v1/cohorts/{a}/instructors/lea"
        assert c.delete(path, headers=keys["gina"]).status_code == 404
        assert c.delete(path, headers=keys["leo"]).status_code == 403
        removed = c.delete(path, headers=keys["bob"])
        assert removed.status_code == 200 and removed.json()["removed"] is True, removed.text
        assert c.delete(path, headers=keys["bob"]).status_code == 404
        assert c.delete(f"/v1/cohorts/{a}/instructors/bob",
                        headers=keys["bob"]).status_code == 200
        last = c.delete(f"/v1/cohorts/{a}/instructors/ann", headers=keys["ann"])
        assert (last.status_code, last.json()["error"]) == (409, "last_instructor")
        bad = c.delete(f"/v1/cohorts/{a}/instructors/..%2Fx", headers=keys["ann"])
        assert bad.status_code in (404, 422), bad.text
