"""The /teach roster box takes a whole class (probe AT): 200 learners with e-mail
addresses for ids are ~7,000 characters, which the form refused (every form field was
capped at 4,096 characters) while the API took 2,000 lines. Now the box takes what the
API takes; past that it is refused naming the limit, with nobody enrolled; every other
field keeps the usual cap. Real spawn_service (uvicorn), SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from ..security.test_cohort_caps import _csrf, _keys, _signin
from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn  # noqa: F401


def instructor_with_classes(env: SpawnEnv, c: httpx.Client,
                            *names: str) -> tuple[dict[str, str], list[str]]:
    """Instructor ann of tenant acme, signed in on ``c``, with a class per name: her API
    key header and the classes' ids."""
    key = _keys(env.state.ctx.db, {"ann": "instructor"})["ann"]
    made = [c.post("/v1/cohorts", json={"name": name}, headers=key).json()["cohort_id"]
            for name in names]
    _signin(c, env.url, key)
    return key, made


def test_a_class_of_200_fits_the_roster_box(make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn()
    origin = {"origin": env.url}
    with env.client() as c:
        ann, (a,) = instructor_with_classes(env, c, "Net A")
        keys = {"ann": ann}
        page = c.get("/teach")
        assert "up to 2,000 lines" in page.text
        students = [f"student.number{i:03d}@school.example" for i in range(200)]
        form = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                      data={"csrf": _csrf(c, "/teach"), "roster": "\n".join(students)})
        assert form.status_code == 303, form.text  # back to /teach: a reload sends nothing
        assert "200 learners newly enrolled." in c.get(form.headers["location"]).text
        # The class's list again with ten late-comers (one line twice): the answer says
        # the 200 were in already, rather than "10 newly enrolled" of a 211-line file.
        later = "\n".join(["Email", *students, *(f"late{i}@school.example" for i in range(10)),
                           "late0@school.example"])
        again = c.post(f"/v1/cohorts/{a}/enrolments", content=later,
                       headers={**ann, "content-type": "text/csv"})
        assert (again.json()["enrolled"], again.json()["already_enrolled"]) == (10, 200)
        form = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                      data={"csrf": _csrf(c, "/teach"), "roster": later})
        assert ("0 learners newly enrolled; 210 already in the class."
                in c.get(form.headers["location"]).text)
        # One of them in capitals (an LMS export): the form says so, nobody is enrolled.
        capitals = c.post(f"/teach/cohorts/{a}/roster", headers=origin, data={
            "csrf": _csrf(c, "/teach"), "roster": "late10@school.example\nLATE0@SCHOOL.EXAMPLE"})
        assert capitals.status_code == 422, capitals.text
        assert ("is the class&#39;s learner &#34;late0@school.example&#34; in other letter "
                "case" in capitals.text), capitals.text

        too_many = "\n".join(f"l{i}" for i in range(2001))
        refused = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                         data={"csrf": _csrf(c, "/teach"), "roster": too_many})
        assert refused.status_code in (400, 413, 422), refused.text
        assert "2000" in refused.text or "2,000" in refused.text, refused.text
        # Past 256 KiB: said on the form, the pasted text kept there to cut in parts (it
        # was a bare error page, "roster: must be text of at most 262144 characters").
        huge = "\n".join(f"student.number{i:05d}@school.example" for i in range(9000))
        over = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                      data={"csrf": _csrf(c, "/teach"), "roster": huge})
        assert over.status_code == 422, over.text
        assert "more than 256 KiB (about 2,000 learners); paste it in parts" in over.text
        assert "student.number08999@school.example" in over.text
        long_name = c.post("/teach/cohorts", headers=origin,
                           data={"csrf": _csrf(c, "/teach"), "name": "x" * 5000})
        assert "at most 4096 characters" in long_name.text
        # A form's refusal says why, not only which field (probe AT: "invalid request: name").
        empty = c.post("/teach/cohorts", headers=origin,
                       data={"csrf": _csrf(c, "/teach"), "name": "  "})
        assert ("Name: 1-120 characters, no control character or bidi override"
                in empty.text), empty.text
        c.cookies.clear()
        learners = c.get(f"/v1/cohorts/{a}", headers=keys["ann"]).json()["learners"]
        late = [f"late{i}@school.example" for i in range(10)]
        assert sorted(m["subject"] for m in learners) == sorted(students + late)
        assert len(c.get("/v1/cohorts", headers=keys["ann"]).json()["cohorts"]) == 1
