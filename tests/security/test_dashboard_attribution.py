"""Attack: an instructor reads another class's learner through their own dashboard. Any
instructor may enrol any account of the tenant by CSV, without its consent; instructor B
enrols class A's learner and assigns the same lab as A, so that the learner's next start
of that lab (made without an assignment id, as the API and the lab cards allow) is filed
under B's assignment, and B's dashboard then lists the lab, its timeline and its terminal
recordings.

Before: a start without `assignment_id` was filed under the learner's "most favourable"
open assignment of the lab, here B's (it closes first), silently. After: when assignments
of more than one of the learner's classes are open for that lab, the start is refused
(409 `assignment_ambiguous`, naming the classes, nothing taken) and the learner starts it
from "Your assignments", whose button sends the assignment id; B's dashboard, timeline
and recording links show none of the learner's class-A labs. Real spawn_service
(uvicorn), real nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from forge.classroom.assignments import iso
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role
from forge.store.models import AssignmentAttempt

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401


def test_another_class_never_gets_the_learners_labs(make_spawn: MakeSpawn  # noqa: F811
                                                    ) -> None:
    env = make_spawn()
    db = env.state.ctx.db
    for who in ("ann", "bob"):
        record_role(db, "acme", who, "instructor", source="test")
    keys = {who: {"x-api-key": create_api_key(db, "acme", who).plaintext}
            for who in ("ann", "bob", "lea")}
    grant(db, "acme", "PRO", "lea")
    now = datetime.now(UTC)

    def open_class(c: httpx.Client, who: str, name: str, hours: int) -> tuple[str, str]:
        cid = c.post("/v1/cohorts", json={"name": name}, headers=keys[who]).json()["cohort_id"]
        enrol = c.post(f"/v1/cohorts/{cid}/enrolments", content="subject\nlea\n",
                       headers={**keys[who], "content-type": "text/csv"})
        assert enrol.status_code == 200, enrol.text
        asg = c.post(f"/v1/cohorts/{cid}/assignments", headers=keys[who], json={
            "template_id": "lab-netplus", "opens_at": iso(now),
            "closes_at": iso(now + timedelta(hours=hours)),
            "attempts_allowed": 3, "hints_allowed": True})
        assert asg.status_code == 201, asg.text
        return cid, asg.json()["assignment_id"]

    with env.client() as c:
        a, a_asg = open_class(c, "ann", "Class A", hours=3)
        first = c.post("/v1/spawn", json={"track": "netplus"}, headers=keys["lea"])
        assert first.status_code == 201, first.text  # one class: its assignment, as before
        # B enrols lea without asking and assigns the same lab, closing sooner than A's.
        b, b_asg = open_class(c, "bob", "Class B", hours=1)

        guessed = c.post("/v1/spawn", json={"track": "netplus"}, headers=keys["lea"])
        assert guessed.status_code == 409, guessed.text
        body = guessed.json()
        assert body["error"] == "assignment_ambiguous"
        assert '"Class A", "Class B"' in body["message"] and "Your assignments" in body["message"]
        assert body["details"][0]["field"] == "assignment_id"

        # "Your assignments" starts it for the class the learner picks, by its id.
        assert c.post("/signin", data={"api_key": keys["lea"]["x-api-key"]},
                      headers={"origin": env.url}).status_code == 303
        tracks = c.get("/tracks").text
        forms = re.findall(r'<form method="post" action="/spawn">(.*?)</form>', tracks, re.S)
        mine = next(f for f in forms if f'name="assignment_id" value="{a_asg}"' in f)
        assert any(f'name="assignment_id" value="{b_asg}"' in f for f in forms)
        fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', mine))
        started = c.post("/spawn", data=fields, headers={"origin": env.url})
        assert started.status_code == 303, started.text
        c.cookies.clear()

        with db.read() as sess:
            filed = {(r.assignment_id, r.scenario_id) for r in sess.scalars(
                select(AssignmentAttempt))}
        second = started.headers["location"].rsplit("/", 1)[1]
        assert filed == {(a_asg, first.json()["scenario_id"]), (a_asg, second)}

        # B's dashboard, timeline and recording links show none of lea's class-A labs.
        dash = c.get(f"/v1/cohorts/{b}/dashboard", headers=keys["bob"]).json()
        (row,) = dash["assignments"][0]["rows"]
        assert (row["subject"], row["labs"], row["status"]) == ("lea", [], "not started")
        seen = c.get(f"/v1/cohorts/{b}/learners/lea/timeline", headers=keys["bob"]).json()
        assert seen["labs"] == []
        for sid in (first.json()["scenario_id"], second):
            r = c.get(f"/v1/cohorts/labs/{sid}/recordings/learner.0.cast", headers=keys["bob"])
            assert (r.status_code, r.json()["error"]) == (404, "lab_not_found")
        # A's instructor sees both.
        (row,) = c.get(f"/v1/cohorts/{a}/dashboard",
                       headers=keys["ann"]).json()["assignments"][0]["rows"]
        assert sorted(row["labs"]) == sorted([first.json()["scenario_id"], second])
