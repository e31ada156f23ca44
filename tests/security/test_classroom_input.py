"""Bad input to the classroom API from an instructor: each is a clear 4xx naming the field
and leaves nothing behind (it was a 500 before: a NUL in a cohort name on PostgreSQL, a
year-1 or year-9999 time with an offset, the same instructor added twice at once), a time
before 1970 no longer makes an assignment that refuses every start, nor does a window
inside one second (the spawn gate reads whole seconds), and a roster sent as
something else than CSV is refused. Real spawn_service, SQLite and PostgreSQL.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from ..support.lab_catalog import lab_catalog_dir


def test_classroom_input_is_refused_naming_the_field(
        make_spawn: MakeSpawn, tmp_path: Path) -> None:  # noqa: F811
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    record_role(db, "acme", "ann", "instructor", source="test")
    ann = {"x-api-key": create_api_key(db, "acme", "ann").plaintext}
    with env.client() as c:
        for body, field in (({"name": "Net\u0000work"}, "name"),
                            ({"name": "Net", "idp_group": "g\u0000"}, "idp_group")):
            got = c.post("/v1/cohorts", json=body, headers=ann)
            assert got.status_code == 422, got.text
            assert got.json()["details"][0]["field"] == field
        assert c.get("/v1/cohorts", headers=ann).json()["cohorts"] == []
        named = c.post("/v1/cohorts", json={"name": "Réseau\u00a0A 👩\u200d💻"}, headers=ann)
        assert named.status_code == 201, named.text  # a no-break space, a ZWJ emoji: a name

        cid = c.post("/v1/cohorts", json={"name": "Net"}, headers=ann).json()["cohort_id"]
        good = {"template_id": "netplus", "opens_at": "2026-01-01T00:00:00Z",
                "closes_at": "2027-01-01T00:00:00Z"}
        for change, field in (({"opens_at": "0001-01-01T00:00:00+01:00"}, "opens_at"),
                              ({"closes_at": "9999-12-31T23:59:59-01:00"}, "closes_at"),
                              ({"opens_at": "0001-01-01T00:00:00Z"}, "opens_at"),
                              ({"closes_at": "2027-01-01T00:00:00"}, "closes_at"),
                              # Inside one second: shown opening and closing at 09:00:00Z,
                              # and the spawn gate (whole seconds) never found it open.
                              ({"opens_at": "2026-12-01T09:00:00.2Z",
                                "closes_at": "2026-12-01T09:00:00.8Z"}, "closes_at")):
            got = c.post(f"/v1/cohorts/{cid}/assignments", json={**good, **change},
                         headers=ann)
            assert got.status_code == 422, (change, got.text)
            assert [d["field"] for d in got.json()["details"]] == [field], got.text
        assert c.get(f"/v1/cohorts/{cid}/assignments",
                     headers=ann).json()["assignments"] == []

        got = c.post(f"/v1/cohorts/{cid}/enrolments", content='{"subject": "lea"}',
                     headers={**ann, "content-type": "application/json"})
        assert got.status_code == 415 and got.json()["details"][0]["field"] == "content-type"
        assert c.get(f"/v1/cohorts/{cid}", headers=ann).json()["learners"] == []

        def add() -> int:
            return c.post(f"/v1/cohorts/{cid}/instructors", json={"subject": "zed"},
                          headers=ann).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: add(), range(8))) == {200}
