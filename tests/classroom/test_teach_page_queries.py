"""/teach reads a page of classes, with their assignments and invite links, in a fixed
number of queries.

Before, the page counted the learners of its 20 classes in one query but read each class's
assignments (a check that the caller manages the class, then its assignments) and its
live invite links with queries of its own: the page's work grew with the classes on it
(8 classes: 24 statements more than 2). Now one query reads the assignments of the whole
page and one its invite links (each class's newest first, as before). Real
spawn_service (uvicorn), real nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from forge.classroom import assignments, cohort_invites, cohorts
from forge.classroom.cohorts import Manager

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from ..support.class_people import class_people
from ..support.sql_statements import sql_statements


def test_teach_reads_its_classes_in_fixed_queries(make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn()
    db = env.state.ctx.db
    people = class_people(db, ("ann", "ben"), ())
    ann = Manager("acme", "ann", "instructor")
    web = httpx.Client(base_url=env.url, timeout=20)
    assert web.post("/signin", data={"api_key": people["ann"]["x-api-key"]},
                    headers={"origin": env.url}).status_code == 303
    now = datetime.now(UTC)
    made: dict[str, list[str]] = {}

    def add_classes(n: int) -> None:
        for _ in range(n):
            cid = cohorts.create_cohort(db, ann, f"Class {len(made)}").cohort_id
            made[cid] = [assignments.create_assignment(
                db, ann, cid, template_id="netplus", opens_at=now,
                closes_at=now + timedelta(days=1 + k), attempts_allowed=2,
                hints_allowed=False, known_templates={"netplus"}).assignment_id
                for k in range(2)]
            made[cid].append(cohort_invites.make_invite(db, ann, cid)[0].invite_id)

    def statements_of_teach() -> tuple[int, str]:
        with sql_statements(db) as seen:
            page = web.get("/teach")
        assert page.status_code == 200
        return len(seen), page.text

    add_classes(2)
    few, _ = statements_of_teach()
    add_classes(6)
    many, page = statements_of_teach()
    for i, ids in enumerate(made.values()):  # every class with its own assignments, links
        assert f"Class {i}" in page
        assert all(x in page for x in ids), (i, ids)
    assert many == few, (few, many)

    # Each class still lists its own usable links, newest first, and only for classes
    # the caller manages.
    first, second = list(made)[:2]
    links = [cohort_invites.make_invite(db, ann, first)[0].invite_id for _ in range(3)]
    listed = cohort_invites.live_invites(db, ann, [first, second])
    assert [i.invite_id for i in listed[first]] == [*links[::-1], made[first][-1]]
    assert [i.invite_id for i in listed[second]] == [made[second][-1]]
    ben = Manager("acme", "ben", "instructor")
    assert cohort_invites.live_invites(db, ben, [first, second]) == {first: [], second: []}
