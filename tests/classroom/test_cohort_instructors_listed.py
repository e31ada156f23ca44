"""An instructor sees who manages their class (instructor of a class of 200).

Before: `POST /v1/cohorts/<id>/instructors` added a colleague and `DELETE
.../instructors/<subject>` took a past teaching assistant off, but nothing listed who
manages the class: not `GET /v1/cohorts/<id>`, not /teach. Everyone there reads every
learner's scores and terminal recordings, and an LMS roster sync adds the course's teachers
by itself, so an instructor could not tell who had access, nor find whom to take off. Now
`GET /v1/cohorts/<id>` answers `instructors` and /teach names them under each class.
Real spawn_service (uvicorn), SQLite and PostgreSQL.
"""

from __future__ import annotations

from ..security.test_cohort_caps import _keys, _signin
from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401

LINE = "Instructors (each sees this class's dashboard): "


def test_the_instructors_of_a_class_are_listed(make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn()
    keys = _keys(env.state.ctx.db, {"ann": "instructor", "bob": "instructor",
                                    "zoe": "instructor"})
    with env.client() as c:
        mine = c.post("/v1/cohorts", json={"name": "Net 101"}, headers=keys["ann"])
        cid = mine.json()["cohort_id"]
        other = c.post("/v1/cohorts", json={"name": "Zoe's"}, headers=keys["zoe"])
        assert other.status_code == 201, other.text
        added = c.post(f"/v1/cohorts/{cid}/instructors", json={"subject": "bob"},
                       headers=keys["ann"])
        assert added.status_code == 200, added.text
        got = c.get(f"/v1/cohorts/{cid}", headers=keys["ann"])
        assert got.status_code == 200, got.text
        assert got.json()["instructors"] == ["ann", "bob"]
        assert c.get(f"/v1/cohorts/{cid}", headers=keys["bob"]).json()["instructors"] == [
            "ann", "bob"]
        _signin(c, env.url, keys["ann"])
        page = c.get("/teach").text
        assert LINE + "ann, bob." in page, page
        assert "zoe" not in page  # another class's staff: not shown

        c.cookies.clear()
        gone = c.delete(f"/v1/cohorts/{cid}/instructors/bob", headers=keys["ann"])
        assert gone.status_code == 200, gone.text
        assert c.get(f"/v1/cohorts/{cid}", headers=keys["ann"]).json()["instructors"] == [
            "ann"]
        _signin(c, env.url, keys["ann"])
        assert LINE + "ann." in c.get("/teach").text
