"""Attack: reading the instructor dashboard of a cohort one does not manage — an instructor
of another cohort of the same tenant, an instructor or operator of another tenant, a
learner — through its page, its JSON and its CSV; reading a learner's timeline or terminal
recording outside one's cohorts; smuggling another tenant's lab (or another learner's) into
a cohort's figures through an attempt row; asking the scoreboard for score summaries
without the operator token.

Before: there was no dashboard (issue 18 item 3 adds it). After: every read is scoped in
its query to the cohorts the caller manages, of their tenant, to learners enrolled there and
to labs of that tenant and learner; anything else is 404 (the answer for an id that does not
exist), a learner 403, a malformed id 422 naming the field, nobody signed in 401 or the
sign-in page; the scoreboard's summaries need the operator token. Real spawn_service
(uvicorn), real nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from forge.classroom import assignments, cohorts
from forge.classroom.cohorts import Manager
from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.store.db import Database
from forge.store.models import AssignmentAttempt, Scenario

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401

LAB = "lab-netplus"


def _lab(db: Database, sid: str, assignment_id: str, subject: str, *, tenant: str = "acme",
         attempt_subject: str | None = None, attempt: int = 1) -> None:
    """A running lab of (tenant, subject), recorded as an attempt at the assignment."""
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id=tenant,
                          subject=subject, track="netplus", template_id=LAB, plan="PRO",
                          state="running", created_at=now, updated_at=now, details={}))
        sess.flush()
        sess.add(AssignmentAttempt(assignment_id=assignment_id,
                                   subject=attempt_subject or subject, attempt=attempt,
                                   request_id="r-" + sid, scenario_id=sid, at=now))


def test_dashboard_reads_are_scoped_to_managed_cohorts(make_spawn: MakeSpawn  # noqa: F811
                                                       ) -> None:
    env = make_spawn()
    db = env.state.ctx.db
    people = {"ann": ("acme", "instructor"), "bob": ("acme", "instructor"),
              "olga": ("acme", "operator"), "lea": ("acme", "learner"),
              "leo": ("acme", "learner"), "gina": ("globex", "instructor"),
              "gil": ("globex", "operator")}
    keys = {}
    for who, (tenant, role) in people.items():
        record_role(db, tenant, who, role, source="test")
        keys[who] = {"x-api-key": create_api_key(db, tenant, who).plaintext}
    now = datetime.now(UTC)
    ids = {}
    for name, who, learner in (("A", Manager("acme", "ann", "instructor"), "lea"),
                               ("B", Manager("acme", "bob", "instructor"), "leo"),
                               ("G", Manager("globex", "gina", "instructor"), "lea")):
        cid = cohorts.create_cohort(db, who, f"Class {name}").cohort_id
        cohorts.enrol_subjects(db, who, cid, [learner])
        aid = assignments.create_assignment(
            db, who, cid, template_id=LAB, opens_at=now - timedelta(hours=1),
            closes_at=now + timedelta(hours=1), attempts_allowed=3, hints_allowed=True,
            known_templates={LAB}).assignment_id
        ids[name] = (cid, aid)
    a, a_asg = ids["A"]
    b, b_asg = ids["B"]
    g, _ = ids["G"]
    lea_lab, leo_lab, foreign, swapped = (f"scn-{n}" * 1 + "0" * 15 for n in "1234")
    _lab(db, lea_lab, a_asg, "lea")
    _lab(db, leo_lab, b_asg, "leo")
    # Rows that must never count for cohort A: globex's "lea" lab, and leo's lab filed as
    # lea's attempt (leo is not in A).
    with db.session() as sess:
        sess.add(AssignmentAttempt(assignment_id=a_asg, subject="lea", attempt=9,
                                   request_id="x", scenario_id=None, at=now))
    _lab(db, foreign, a_asg, "lea", tenant="globex", attempt=2)
    _lab(db, swapped, a_asg, "leo", attempt_subject="lea", attempt=3)

    cast = "learner.0.cast"
    reads = [f"/v1/cohorts/{a}/dashboard", f"/v1/cohorts/{a}/dashboard.csv",
             f"/v1/cohorts/{a}/learners/lea/timeline",
             f"/teach/cohorts/{a}", f"/teach/cohorts/{a}/dashboard.csv",
             f"/teach/cohorts/{a}/learners/lea"]
    recordings = [f"/v1/cohorts/labs/{lea_lab}/recordings/{cast}",
                  f"/teach/labs/{lea_lab}/recordings/{cast}"]
    origin = {"origin": env.url}
    with env.client() as c:
        # The instructor of A sees A, only its learner and only lea's own lab of tenant acme.
        mine = c.get(f"/v1/cohorts/{a}/dashboard", headers=keys["ann"])
        assert mine.status_code == 200, mine.text
        (row,) = mine.json()["assignments"][0]["rows"]
        assert (row["subject"], row["labs"], row["attempts_used"]) == ("lea", [lea_lab], 1)
        timeline = c.get(f"/v1/cohorts/{a}/learners/lea/timeline", headers=keys["ann"])
        assert [lab["scenario_id"] for lab in timeline.json()["labs"]] == [lea_lab]
        for sid in (foreign, swapped, leo_lab):  # in the attempt rows, not in ann's scope
            r = c.get(f"/v1/cohorts/labs/{sid}/recordings/{cast}", headers=keys["ann"])
            assert (r.status_code, r.json()["error"]) == (404, "lab_not_found"), sid
        r = c.get(f"/v1/cohorts/{a}/learners/leo/timeline", headers=keys["ann"])
        assert (r.status_code, r.json()["error"]) == (404, "learner_not_found")
        # in scope, the recording is asked of the scoreboard (unreachable here): not a 404
        r = c.get(recordings[0], headers=keys["ann"])
        assert r.json()["error"] == "recording_unavailable", r.text
        # The tenant's operator sees every cohort of the tenant, another tenant's none.
        assert c.get(f"/v1/cohorts/{b}/dashboard", headers=keys["olga"]).status_code == 200
        assert c.get(f"/v1/cohorts/{a}/dashboard", headers=keys["gil"]).status_code == 404

        # Another cohort's instructor and another tenant's: 404 through JSON and CSV...
        for outsider in ("bob", "gina", "gil"):
            for path in reads[:3] + recordings[:1]:
                r = c.get(path, headers=keys[outsider])
                assert r.status_code == 404, (outsider, path, r.text)
                assert r.json()["error"] in ("cohort_not_found", "lab_not_found")
                assert "Class A" not in r.text
        # ... and through the pages, signed in with the session cookie.
        for outsider in ("bob", "gina"):
            c.cookies.clear()
            assert c.post("/signin", data={"api_key": keys[outsider]["x-api-key"]},
                          headers=origin).status_code == 303
            for path in reads[3:] + recordings[1:]:
                r = c.get(path)
                assert r.status_code == 404, (outsider, path)
                assert "Class A" not in r.text
        # A learner (even of the cohort): no dashboard at all.
        c.cookies.clear()
        for path in reads[:3]:
            r = c.get(path, headers=keys["lea"])
            assert (r.status_code, r.json()["error"]) == (403, "instructor_required"), path
        r = c.get(recordings[0], headers=keys["lea"])
        assert r.status_code == 403
        assert c.post("/signin", data={"api_key": keys["lea"]["x-api-key"]},
                      headers=origin).status_code == 303
        for path in reads[3:] + recordings[1:]:
            assert c.get(path).status_code == 403, path
        # Nobody signed in: 401 for the API, the sign-in page for the pages.
        c.cookies.clear()
        assert c.get(reads[0]).status_code == 401
        assert c.get(reads[3]).headers["location"].startswith("/signin?next=")
        away = c.get(f"/teach/cohorts/{a}/learners/lea@acme")  # quoted once, not twice
        assert away.headers["location"] == f"/signin?next=/teach/cohorts/{a}/learners/lea%40acme"
        # Malformed ids: 422 naming the field, never a lookup.
        for path, field in ((f"/v1/cohorts/coh-{'x' * 16}/dashboard", "cohort_id"),
                            (f"/v1/cohorts/{a}/learners/bad%20id/timeline", "subject"),
                            (f"/v1/cohorts/labs/scn-123/recordings/{cast}", "scenario_id"),
                            (f"/v1/cohorts/coh-{'x' * 16}", "cohort_id"),  # the same answer
                            (f"/v1/cohorts/coh-{'x' * 16}/assignments", "cohort_id")):
            r = c.get(path, headers=keys["ann"])
            assert (r.status_code, r.json()["details"][0]["field"]) == (422, field), path
        assert g  # globex's own cohort exists: the 404s above are scope, not absence

        # A graded lab's recordings while the scoreboard is unreachable: the timeline says
        # so (502), it does not show "no recordings".
        with db.session() as sess:
            graded = sess.get(Scenario, lea_lab)
            assert graded is not None
            graded.state = "completed"
        r = c.get(f"/v1/cohorts/{a}/learners/lea/timeline", headers=keys["ann"])
        assert (r.status_code, r.json()["error"]) == (502, "backend_unreachable"), r.text

    # The scoreboard's summaries: the operator token only.
    board = TestClient(build_scoreboard(env.settings))
    body = {"scenario_ids": [lea_lab]}
    assert board.post("/v1/admin/scores/summaries", json=body).status_code == 401
    learner = board.post("/v1/admin/scores/summaries", json=body, headers=keys["lea"])
    assert learner.status_code in (401, 403)
    bad = board.post("/v1/admin/scores/summaries", json={"scenario_ids": ["../x"]},
                     headers={"authorization": "Bearer "
                              + env.settings.operator.current.decode()})
    assert bad.status_code == 422
