"""Attack and use: the /teach forms that change a running class.

An instructor of 200 learners changes an assignment's due time or attempts, gives one
learner more time or more attempts and takes a learner out from the page, not only through the API (the
rules are `forge.classroom.class_changes`', as for the API). Tried against them: another
instructor's post on Ann's class (404, nothing changed), a learner (403), a forged CSRF
token (403), a malformed assignment id, an empty change, a due time that gives no more
time, a learner who is not in the class and an account id the API refuses (a NUL: 500
on PostgreSQL before) (422/404 naming the field, nothing changed).
Real spawn_service (uvicorn), real nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from .test_cohort_caps import _class_of, _csrf, _keys, _signin


def test_an_instructor_changes_a_running_class_from_the_page(
    make_spawn: MakeSpawn,  # noqa: F811
) -> None:
    env = make_spawn()
    db = env.state.ctx.db
    keys = _keys(db, {"ann": "instructor", "bob": "instructor", "lea": "learner"})
    origin = {"origin": env.url}
    with env.client() as c:
        a = _class_of(c, keys["ann"], ["lea", "leo", "lia"])
        made = c.post(f"/v1/cohorts/{a}/assignments", headers=keys["ann"], json={
            "template_id": "lab-netplus", "opens_at": "2026-01-01T00:00:00Z",
            "closes_at": "2027-01-01T00:00:00Z", "attempts_allowed": 1})
        assert made.status_code == 201, made.text
        asg = made.json()["assignment_id"]

        def state() -> tuple[dict[str, object], list[str]]:
            cohort = c.get(f"/v1/cohorts/{a}", headers=keys["ann"]).json()
            return cohort["assignments"][0], [m["subject"] for m in cohort["learners"]]

        def dues() -> dict[str, tuple[str, int]]:
            board = c.get(f"/v1/cohorts/{a}/dashboard", headers=keys["ann"]).json()
            return {r["subject"]: (r["due_at"], r["attempts_allowed"])
                    for r in board["assignments"][0]["rows"]}

        before = state()
        # Bob manages no part of Ann's class; Lea is a learner: neither changes anything.
        _signin(c, env.url, keys["bob"])
        token = _csrf(c, "/teach")
        for path, form in ((f"/teach/cohorts/{a}/changes", {"attempts_allowed": "5"}),
                           (f"/teach/cohorts/{a}/due", {"subject": "lea",
                                                        "closes_at": "2027-02-01T09:00"}),
                           (f"/teach/cohorts/{a}/attempts", {"subject": "lea",
                                                             "extra_attempts": "2",
                                                             "reason": "crash"}),
                           (f"/teach/cohorts/{a}/remove", {"subject": "lea"})):
            got = c.post(path, headers=origin,
                         data={"csrf": token, "assignment_id": asg, **form})
            assert got.status_code == 404, (path, got.text[:300])
        _signin(c, env.url, keys["lea"])
        refused = c.post(f"/teach/cohorts/{a}/remove", headers=origin,
                         data={"csrf": _csrf(c, "/tracks"), "subject": "leo"})
        assert refused.status_code == 403
        assert state() == before

        _signin(c, env.url, keys["ann"])
        page = c.get("/teach").text
        assert "Change the running class" in page and f'value="{asg}"' in page
        assert f'action="/teach/cohorts/{a}/attempts"' in page and "Give more attempts" in page
        token = _csrf(c, "/teach")
        forged = c.post(f"/teach/cohorts/{a}/remove", headers=origin,
                        data={"csrf": "x", "subject": "leo"})
        assert forged.status_code == 403
        for form, field in (({"assignment_id": "asg-nope", "attempts_allowed": "3"},
                             "assignment_id"),
                            ({"assignment_id": asg}, "closes_at"),
                            ({"assignment_id": asg, "attempts_allowed": "0"},
                             "attempts_allowed")):
            bad = c.post(f"/teach/cohorts/{a}/changes", headers=origin,
                         data={"csrf": token, **form})
            assert bad.status_code == 422 and field in bad.text, (form, bad.text[:300])
        early = c.post(f"/teach/cohorts/{a}/due", headers=origin, data={
            "csrf": token, "assignment_id": asg, "subject": "lea",
            "closes_at": "2026-06-01T09:00"})
        assert early.status_code == 422 and "closes_at" in early.text
        stranger = c.post(f"/teach/cohorts/{a}/due", headers=origin, data={
            "csrf": token, "assignment_id": asg, "subject": "zed",
            "closes_at": "2027-02-01T09:00"})
        assert stranger.status_code == 404 and "subject" in stranger.text
        for form, label in (({"extra_attempts": "0", "reason": "crash"}, "Extra attempts"),
                            ({"extra_attempts": "x", "reason": "crash"}, "Extra attempts"),
                            ({"extra_attempts": "2", "reason": ""}, "Reason")):
            bad = c.post(f"/teach/cohorts/{a}/attempts", headers=origin, data={
                "csrf": token, "assignment_id": asg, "subject": "lea", **form})
            assert bad.status_code == 422 and label in bad.text, (form, bad.text[:300])
            assert 'value="crash"' in bad.text or not form["reason"]  # kept in the form
        # An account id the API would refuse is the same 422 here (a NUL was a 500 on
        # PostgreSQL), on both forms that take one.
        for subject in ("le\x00o", "x" * 129, "<b>leo</b>", ""):
            for path, extra in (("remove", {}), ("due", {"assignment_id": asg,
                                                          "closes_at": "2027-02-01T09:00"})):
                odd = c.post(f"/teach/cohorts/{a}/{path}", headers=origin,
                             data={"csrf": token, "subject": subject, **extra})
                assert odd.status_code == 422 and "subject" in odd.text, (path, subject)
                assert "<b>leo</b>" not in odd.text
        assert state() == before

        # Now the changes themselves, each said on the page.
        changed = c.post(f"/teach/cohorts/{a}/changes", headers=origin, data={
            "csrf": token, "assignment_id": asg, "closes_at": "2027-01-15T09:00",
            "attempts_allowed": "3"})
        assert changed.status_code == 303, changed.text[:300]
        assert "lab-netplus is now due 2027-01-15T09:00:00Z, with 3 attempts." in c.get(
            "/teach").text
        more = c.post(f"/teach/cohorts/{a}/due", headers=origin, data={
            "csrf": token, "assignment_id": asg, "subject": " lea ",
            "closes_at": "2027-02-01T09:00"})
        assert more.status_code == 303, more.text[:300]
        assert "lea now has until 2027-02-01T09:00:00Z" in c.get("/teach").text
        extra = c.post(f"/teach/cohorts/{a}/attempts", headers=origin, data={
            "csrf": token, "assignment_id": asg, "subject": "lea", "extra_attempts": "2",
            "reason": "her lab crashed"})
        assert extra.status_code == 303, extra.text[:300]
        assert "lea now has 2 extra attempts of this assignment." in c.get("/teach").text
        # The class's dashboard page says who has more attempts and why (the reason was
        # stored and shown nowhere).
        board = c.get(f"/teach/cohorts/{a}").text
        assert "(2 extra: her lab crashed)" in board
        assert "Extra attempts given: 1 learner</summary>" in board
        assert "<li>lea: 2 extra (her lab crashed)</li>" in board
        out = c.post(f"/teach/cohorts/{a}/remove", headers=origin,
                     data={"csrf": token, "subject": "lia"})
        assert out.status_code == 303, out.text[:300]
        assert "lia is no longer a learner of this class." in c.get("/teach").text
        gone = c.post(f"/teach/cohorts/{a}/remove", headers=origin,
                      data={"csrf": token, "subject": "lia"})
        assert gone.status_code == 404
        c.cookies.clear()
        assignment, learners = state()
        assert (assignment["closes_at"], assignment["attempts_allowed"]) == (
            "2027-01-15T09:00:00Z", 3)
        assert learners == ["lea", "leo"]
        assert dues() == {"lea": ("2027-02-01T09:00:00Z", 5), "leo": ("2027-01-15T09:00:00Z", 3)}
