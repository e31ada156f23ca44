"""Attack: a learner gives themselves more time or attempts on a closed assignment, or
takes a classmate out of the class; another class's (or tenant's) instructor changes an
assignment that is not theirs or gives one of its learners attempts. And the instructor's
own changes reach the spawn gate: an extension lets that one learner start the lab after
the class's due time, a classmate still cannot; extra attempts let that one learner start
it again once their last attempt is used.

Real spawn_service (uvicorn), real nats-server, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from forge.classroom.assignments import iso
from forge.store.models import (
    Assignment,
    AssignmentAttemptGrant,
    AssignmentExtension,
    Enrolment,
)

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from ..support.class_people import class_people
from ..support.lab_catalog import lab_catalog_dir


def test_only_the_classes_instructor_changes_it_and_the_gate_follows(
        make_spawn: MakeSpawn, tmp_path: Path) -> None:  # noqa: F811
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    key = class_people(db, ("ann", "bob"), ("lea", "leo"))
    key |= class_people(db, ("gil",), (), tenant="globex")
    now = datetime.now(UTC)
    with env.client() as c:
        cid = c.post("/v1/cohorts", json={"name": "Net"}, headers=key["ann"]).json()["cohort_id"]
        c.post(f"/v1/cohorts/{cid}/enrolments", content="lea\nleo\n",
               headers={**key["ann"], "content-type": "text/csv"}).raise_for_status()
        made = c.post(f"/v1/cohorts/{cid}/assignments", headers=key["ann"], json={
            "template_id": "netplus", "opens_at": iso(now - timedelta(hours=3)),
            "closes_at": iso(now - timedelta(hours=1)), "attempts_allowed": 1,
            "hints_allowed": False})
        assert made.status_code == 201, made.text
        aid = made.json()["assignment_id"]
        base = f"/v1/cohorts/{cid}/assignments/{aid}"
        due = {"closes_at": iso(now + timedelta(hours=2))}
        more = {"extra_attempts": 2, "reason": "her lab crashed"}

        # The learner, on herself and on a classmate, and another class's or tenant's
        # instructor.
        for who, status, code in (("lea", 403, "instructor_required"),
                                  ("bob", 404, "cohort_not_found"),
                                  ("gil", 404, "cohort_not_found")):
            tries = [c.patch(base, json={"closes_at": due["closes_at"], "attempts_allowed": 9},
                             headers=key[who]),
                     c.put(f"{base}/learners/lea/due", json=due, headers=key[who]),
                     c.delete(f"{base}/learners/lea/due", headers=key[who]),
                     c.put(f"{base}/learners/lea/attempts", json=more, headers=key[who]),
                     c.delete(f"{base}/learners/lea/attempts", headers=key[who]),
                     c.delete(f"/v1/cohorts/{cid}/learners/leo", headers=key[who]),
                     c.get(f"{base}/attempt-grants", headers=key[who])]
            for answer in tries:
                assert (answer.status_code, answer.json()["error"]) == (status, code), \
                    answer.text
        with db.read() as sess:
            row = sess.get(Assignment, aid)
            assert row is not None and row.attempts_allowed == 1
            assert iso(row.closes_at) == iso(now - timedelta(hours=1))
            assert sess.query(AssignmentExtension).count() == 0
            assert sess.query(AssignmentAttemptGrant).count() == 0
            assert sess.query(Enrolment).count() == 2

        # Malformed requests name their field; nothing is stored.
        for answer, field in (
                (c.patch(base, json={"closes_at": None}, headers=key["ann"]), "closes_at"),
                (c.patch(base, json={"attempts_allowed": "9"}, headers=key["ann"]),
                 "attempts_allowed"),
                (c.patch(f"/v1/cohorts/{cid}/assignments/asg-x", json={"hints_allowed": True},
                         headers=key["ann"]), "assignment_id"),
                (c.put(f"{base}/learners/le%20o/due", json=due, headers=key["ann"]),
                 "subject"),
                # Numbers are not times (pydantic would read seconds since 1970).
                (c.patch(base, json={"closes_at": 1900000000}, headers=key["ann"]),
                 "closes_at"),
                (c.put(f"{base}/learners/lea/due", json={"closes_at": "1900000000"},
                       headers=key["ann"]), "closes_at"),
                (c.post(f"/v1/cohorts/{cid}/assignments", headers=key["ann"], json={
                    "template_id": "netplus", "opens_at": 1.9e9,
                    "closes_at": iso(now + timedelta(days=1))}), "opens_at"),
                *((c.put(f"{base}/learners/lea/attempts", json=body, headers=key["ann"]),
                   field) for body, field in (
                    ({**more, "extra_attempts": 0}, "extra_attempts"),
                    ({**more, "extra_attempts": 21}, "extra_attempts"),
                    ({**more, "extra_attempts": "2"}, "extra_attempts"),
                    ({"extra_attempts": 2}, "reason"),
                    ({**more, "reason": "   "}, "reason"),
                    ({**more, "reason": "x" * 201}, "reason"),
                    ({**more, "reason": "crash\u202e"}, "reason")))):
            assert answer.status_code == 422, answer.text
            assert field in answer.text
        stranger = c.put(f"{base}/learners/lou/attempts", json=more, headers=key["ann"])
        assert (stranger.status_code, stranger.json()["error"]) == (404, "learner_not_found")
        with db.read() as sess:
            assert sess.query(AssignmentAttemptGrant).count() == 0

        # Closed: neither learner may start it.
        for learner in ("lea", "leo"):
            refused = c.post("/v1/spawn", json={"track": "netplus"}, headers=key[learner])
            assert refused.status_code == 403 and " closed at " in refused.json()["message"]
        # Ann gives lea two more hours: lea starts it, leo still cannot.
        granted = c.put(f"{base}/learners/lea/due", json=due, headers=key["ann"])
        assert granted.status_code == 200, granted.text
        assert granted.json()["closes_at"] == due["closes_at"]
        started = c.post("/v1/spawn", json={"track": "netplus"}, headers=key["lea"])
        assert started.status_code == 201, started.text
        refused = c.post("/v1/spawn", json={"track": "netplus"}, headers=key["leo"])
        assert refused.status_code == 403 and " closed at " in refused.json()["message"]
        mine = c.get("/v1/assignments", headers=key["lea"]).json()["assignments"]
        assert [(a["closes_at"], a["due_extended"], a["attempts_used"]) for a in mine] == [
            (due["closes_at"], True, 1)]

        # Her one attempt is used: refused, until Ann gives her two more (her own
        # allowance, in the gate, her list and the dashboard; leo keeps the class's).
        again = c.post("/v1/spawn", json={"track": "netplus"}, headers=key["lea"])
        assert again.status_code == 403 and "attempts" in again.json()["message"], again.text
        given = c.put(f"{base}/learners/lea/attempts", json=more, headers=key["ann"])
        assert given.status_code == 200, given.text
        assert given.json() == {"cohort_id": cid, "assignment_id": aid, "subject": "lea",
                                     "extra_attempts": 2, "reason": "her lab crashed",
                                     "granted_by": "ann"}
        # Who has extra attempts, and why: listed for Ann (by account id, paged).
        listed = c.get(f"{base}/attempt-grants", headers=key["ann"]).json()
        assert [{k: g[k] for k in ("subject", "extra_attempts", "reason", "granted_by")}
                for g in listed["grants"]] == [{"subject": "lea", "extra_attempts": 2,
                                                "reason": "her lab crashed",
                                                "granted_by": "ann"}]
        assert listed["next"] is None and listed["grants"][0]["granted_at"].endswith("Z")
        later = c.get(f"{base}/attempt-grants", params={"after": "lea"}, headers=key["ann"])
        assert later.json()["grants"] == []
        odd = c.get(f"{base}/attempt-grants", params={"after": "l a"}, headers=key["ann"])
        assert odd.status_code == 422 and "after" in odd.text
        mine = c.get("/v1/assignments", headers=key["lea"]).json()["assignments"]
        assert [(a["attempts_allowed"], a["attempts_used"]) for a in mine] == [(3, 1)]
        board = c.get(f"/v1/cohorts/{cid}/dashboard", headers=key["ann"]).json()
        assert {r["subject"]: (r["attempts_allowed"], r["extra_reason"])
                for r in board["assignments"][0]["rows"]} == {
            "lea": (3, "her lab crashed"), "leo": (1, None)}
        # ...and listed per assignment on every page, without paging through the class.
        assert (board["assignments"][0]["attempt_grants"],
                board["assignments"][0]["attempt_grants_total"]) == (
            [{"subject": "lea", "extra_attempts": 2, "reason": "her lab crashed"}], 1)
        csv_text = c.get(f"/v1/cohorts/{cid}/dashboard.csv", headers=key["ann"]).text
        assert ",lea,started,1,3," in csv_text and ",leo,not started,0,1," in csv_text
        # Past the attempts now: only her lab still running holds her back (her plan's
        # one lab at a time), no longer the assignment.
        again = c.post("/v1/spawn", json={"track": "netplus"}, headers=key["lea"])
        assert (again.status_code, again.json()["error"]) == (429, "quota_exceeded"), again.text

        # Ann takes leo out of the class: the assignment leaves his list.
        gone = c.delete(f"/v1/cohorts/{cid}/learners/leo", headers=key["ann"])
        assert gone.status_code == 200 and gone.json()["was_via"] == "csv", gone.text
        assert c.get("/v1/assignments", headers=key["leo"]).json()["assignments"] == []
        again = c.delete(f"/v1/cohorts/{cid}/learners/leo", headers=key["ann"])
        assert (again.status_code, again.json()["error"]) == (404, "learner_not_found")
