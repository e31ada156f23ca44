"""Attack (or an LMS export): a roster naming the class's own instructors.

Before: the CSV body of `POST /v1/cohorts/{id}/enrolments` and the /teach roster form
enrolled whoever they listed, so an instructor listed in their own class's roster became
one of its learners, counted on its dashboard and able to take its assignments as a
learner (the invite link and IdP groups already refused that). After: the class's
instructors are left out, the answer names them (`not_enrolled`, and a notice on the
page), and the learners of the same roster are enrolled. Real spawn_service (uvicorn),
real nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from .test_cohort_caps import CSV, _csrf, _keys, _signin


def test_a_roster_never_makes_an_instructor_a_learner_of_their_class(
    make_spawn: MakeSpawn,  # noqa: F811
) -> None:
    env = make_spawn()
    db = env.state.ctx.db
    keys = _keys(db, {"ann": "instructor", "bob": "instructor"})
    origin = {"origin": env.url}
    with env.client() as c:
        a = c.post("/v1/cohorts", json={"name": "Net A"}, headers=keys["ann"]).json()[
            "cohort_id"]
        added = c.post(f"/v1/cohorts/{a}/instructors", json={"subject": "bob"},
                       headers=keys["ann"])
        assert added.status_code == 200, added.text

        def learners() -> list[str]:
            return [m["subject"] for m in c.get(f"/v1/cohorts/{a}", headers=keys["ann"])
                    .json()["learners"]]

        roster = c.post(f"/v1/cohorts/{a}/enrolments", content="subject\nann\nlea\nbob\n",
                        headers={**keys["ann"], **CSV})
        assert roster.status_code == 200, roster.text
        assert roster.json() == {"cohort_id": a, "enrolled": 1, "already_enrolled": 0,
                                 "not_enrolled": [
            {"subject": "ann", "reason": "instructor of this cohort"},
            {"subject": "bob", "reason": "instructor of this cohort"}]}
        assert learners() == ["lea"]

        _signin(c, env.url, keys["bob"])
        form = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                      data={"csrf": _csrf(c, "/teach"), "roster": "bob\nleo\nlea\n"})
        assert form.status_code == 303, form.text
        shown = c.get(form.headers["location"]).text
        assert "1 learner newly enrolled; 1 already in the class." in shown  # lea
        assert "Not enrolled, as instructors of this class: bob." in shown
        c.cookies.clear()
        assert learners() == ["lea", "leo"]
        board = c.get(f"/v1/cohorts/{a}/dashboard", headers=keys["ann"])
        assert board.status_code == 200, board.text
        assert board.json()["learners"] == ["lea", "leo"]
