"""A learner's list of assignments is cut at 200 (by due time): the cut is said, never
passed off as the whole list.

A learner of two busy classes (150 and 51 assignments open) got 200 from
`GET /v1/assignments` and on /tracks, nothing saying that the one due last was left out:
they never saw it. The API now answers `"more": true`, and the page says that only the
200 due soonest are listed. Real spawn_service (uvicorn), real nats-server, SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forge.classroom import assignments, cohorts
from forge.classroom.cohorts import Manager
from forge.store.models import Assignment

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from ..support.class_people import class_people
from ..support.lab_catalog import lab_catalog_dir


def test_a_list_cut_at_the_cap_says_so(make_spawn: MakeSpawn,  # noqa: F811
                                       tmp_path: Path) -> None:
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    key = class_people(db, ("ann",), ("lea",))
    ann = Manager("acme", "ann", "instructor")
    now = datetime.now(UTC)
    made: list[str] = []
    for name, count in (("Net 101", 150), ("Net 102", 51)):
        cohort = cohorts.create_cohort(db, ann, name).cohort_id
        cohorts.enrol_subjects(db, ann, cohort, ["lea"])
        for _ in range(count):
            made.append(assignments.create_assignment(
                db, ann, cohort, template_id="netplus", opens_at=now - timedelta(hours=1),
                closes_at=now + timedelta(days=1, minutes=len(made)), attempts_allowed=1,
                hints_allowed=True, known_templates={"netplus"}).assignment_id)
    with env.client() as c:
        mine = c.get("/v1/assignments", headers=key["lea"])
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert [a["assignment_id"] for a in body["assignments"]] == made[:200]
        assert body["more"] is True  # the one due last is not listed, and that is said
        signed = c.post("/signin", data={"api_key": key["lea"]["x-api-key"]},
                        headers={"origin": env.url})
        assert signed.status_code == 303, signed.text
        page = c.get("/tracks").text
        assert page.count('name="assignment_id"') == 200
        assert "Only the 200 due soonest are listed here" in page
        # One fewer: the whole list, and nothing said.
        with db.session() as sess:
            row = sess.get(Assignment, made[-1])
            assert row is not None
            sess.delete(row)
        body = c.get("/v1/assignments", headers=key["lea"]).json()
        assert (len(body["assignments"]), body["more"]) == (200, False)
        assert "due soonest" not in c.get("/tracks").text


def test_a_list_cut_at_the_cap_leads_to_the_rest(make_spawn: MakeSpawn,  # noqa: F811
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`"more": true` said that assignments were left out, but nothing listed them: a
    learner with more than 200 open never learnt the ids of those due last (to start one
    naming it). Now `next` is the `after` of the next page; following it lists each once,
    by due time then id (ties too), and an `after` that is not one of theirs is a 422."""
    monkeypatch.setattr(assignments, "MAX_MINE", 2)
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    key = class_people(db, ("ann", "bob"), ("lea",))
    ann = Manager("acme", "ann", "instructor")
    now = datetime.now(UTC)
    cohort = cohorts.create_cohort(db, ann, "Net 101").cohort_id
    cohorts.enrol_subjects(db, ann, cohort, ["lea"])
    made = [assignments.create_assignment(
        db, ann, cohort, template_id="netplus", opens_at=now - timedelta(hours=1),
        closes_at=now + timedelta(days=1 + n // 2), attempts_allowed=1, hints_allowed=True,
        known_templates={"netplus"}).assignment_id for n in range(5)]
    # By due time, then id (two pairs share a due time).
    order = sorted(made, key=lambda a: (made.index(a) // 2, a))
    bob = Manager("acme", "bob", "instructor")
    other = cohorts.create_cohort(db, bob, "Not lea's").cohort_id
    foreign = assignments.create_assignment(
        db, bob, other, template_id="netplus", opens_at=now, closes_at=now + timedelta(days=1),
        attempts_allowed=1, hints_allowed=True, known_templates={"netplus"}).assignment_id
    with env.client() as c:
        seen: list[str] = []
        after: str | None = None
        pages = 0
        while True:
            got = c.get("/v1/assignments", params={"after": after} if after else {},
                        headers=key["lea"])
            assert got.status_code == 200, got.text
            body = got.json()
            seen += [a["assignment_id"] for a in body["assignments"]]
            pages += 1
            assert body["more"] is (body["next"] is not None)
            after = body["next"]
            if after is None:
                break
        assert (seen, pages) == (order, 3)
        for bad in (foreign, "asg-0000000000000000", "x"):
            refused = c.get("/v1/assignments", params={"after": bad}, headers=key["lea"])
            assert refused.status_code == 422, refused.text
            assert refused.json()["details"][0]["field"] == "after", refused.text
