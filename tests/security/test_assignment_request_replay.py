"""Attack: spend one lab on two assignments by replaying its request id.

A learner in two cohorts has the same lab assigned in both (A1 strict, A2 lenient). Spawn
with request id R for A1 (a lab, an attempt of A1), then send R again naming A2. The
request id's fingerprint covered the track and lab only, so the second request replayed
the first lab (200) while the assignment gate took an attempt of A2 and bound it to that
lab: A2 lost an attempt to a request that started nothing, and one lab counted for two
assignments. The assignment is now part of the request's fingerprint: R for A2 is 409
`request_id_conflict`, A2's attempt is given back, and R for A1 still replays.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from forge.classroom.assignments import iso
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role
from forge.store.models import AssignmentAttempt, Scenario

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from ..support.lab_catalog import lab_catalog_dir


def test_a_request_id_replayed_for_another_assignment_is_a_conflict(
        make_spawn: MakeSpawn, tmp_path: Path) -> None:  # noqa: F811
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    record_role(db, "acme", "ann", "instructor", source="test")
    ann = {"x-api-key": create_api_key(db, "acme", "ann").plaintext}
    lea = {"x-api-key": create_api_key(db, "acme", "lea").plaintext}
    grant(db, "acme", "PRO", "lea")
    now = datetime.now(UTC)
    with env.client() as c:
        assignments = []
        for name in ("strict", "lenient"):
            cid = c.post("/v1/cohorts", json={"name": name}, headers=ann).json()["cohort_id"]
            enrol = c.post(f"/v1/cohorts/{cid}/enrolments", content="subject\nlea\n",
                           headers={**ann, "content-type": "text/csv"})
            assert enrol.status_code < 300, enrol.text
            made = c.post(f"/v1/cohorts/{cid}/assignments", headers=ann, json={
                "template_id": "netplus", "opens_at": iso(now - timedelta(minutes=5)),
                "closes_at": iso(now + timedelta(hours=2)), "attempts_allowed": 2,
                "hints_allowed": True})
            assert made.status_code == 201, made.text
            assignments.append(made.json()["assignment_id"])
        a1, a2 = assignments

        def start(assignment: str) -> tuple[int, dict[str, object]]:
            resp = c.post("/v1/spawn", headers=lea, json={
                "track": "netplus", "request_id": "weekly-lab-0001",
                "assignment_id": assignment})
            return resp.status_code, resp.json()

        first = start(a1)
        assert first[0] == 201, first
        second = start(a2)
        assert second[0] == 409 and second[1]["error"] == "request_id_conflict", second
        again = start(a1)
        assert again[0] == 200 and again[1]["scenario_id"] == first[1]["scenario_id"]
        used = {a["assignment_id"]: a["attempts_used"]
                for a in c.get("/v1/assignments", headers=lea).json()["assignments"]}
    assert used == {a1: 1, a2: 0}
    with db.read() as sess:
        assert sess.scalar(select(func.count()).select_from(Scenario)) == 1
        bound = sess.scalars(select(AssignmentAttempt.assignment_id)
                             .where(AssignmentAttempt.scenario_id.is_not(None))).all()
    assert list(bound) == [a1]  # the lab counts for the assignment it was started for
