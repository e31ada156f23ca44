"""Attack: overflowing a cohort, or the dashboard's pages of it.

A learner joining a full class by its invite link (API and page) or launching into it from
an LMS course, an instructor sending a roster (CSV or the /teach form) or assignments past
the caps; a crafted `limit` or `after` on the dashboard (API and page); and sign-in, which
a full cohort naming one of the person's IdP groups must not break.

Before: a cohort took any number of learners and assignments, and every dashboard read
listed every learner of the cohort at once. After: past `cohorts.MAX_MEMBERS` learners or
`assignments.MAX_ASSIGNMENTS` assignments the request is refused whole (409 `cohort_full`
or `cohort_assignments_full`, naming the cap; a page saying so for an LMS launch),
someone enrolled already may join again;
the dashboard answers a page of learners (`limit` 1-500, `after` an account id; anything
else 422 naming the field) with the whole cohort's totals; a full group cohort is skipped
and the person signed in. Real spawn_service (uvicorn), real nats-server, SQLite and
PostgreSQL; the caps are set low.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from forge.classroom import assignments, cohorts, lti_links
from forge.classroom.cohorts import Manager, create_cohort, enrolled_cohorts
from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role
from forge.store.db import Database
from forge.store.models import Enrolment

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from ..support.lti_platform import launch_learner
from ..support.oidc_provider import LocalProvider
from .test_lti_launch import World, _launch, refused
from .test_lti_launch import shared as shared  # its fixtures, one LMS platform here
from .test_lti_launch import world as world
from .test_oidc_signin import app, begin, login, op  # noqa: F401

CSV = {"content-type": "text/csv"}
ANN = Manager("acme", "ann", "instructor")


def _keys(db: Database, people: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each person's role in tenant acme and their API key."""
    keys = {}
    for who, role in people.items():
        record_role(db, "acme", who, role, source="test")
        keys[who] = {"x-api-key": create_api_key(db, "acme", who).plaintext}
    return keys


def _class_of(c: httpx.Client, key: dict[str, str], learners: list[str]) -> str:
    """A new cohort of ``key``'s holder with ``learners`` enrolled; its id."""
    made = c.post("/v1/cohorts", json={"name": "Net A"}, headers=key)
    assert made.status_code == 201, made.text
    cohort_id: str = made.json()["cohort_id"]
    enrolled = c.post(f"/v1/cohorts/{cohort_id}/enrolments", content="\n".join(learners),
                      headers={**key, **CSV})
    assert enrolled.status_code == 200, enrolled.text
    return cohort_id


def _csrf(c: httpx.Client, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', c.get(path).text)
    assert found is not None
    return found.group(1)


def _signin(c: httpx.Client, url: str, key: dict[str, str]) -> None:
    c.cookies.clear()
    assert c.post("/signin", data={"api_key": key["x-api-key"]},
                  headers={"origin": url}).status_code == 303


def test_nobody_overflows_a_cohort(make_spawn: MakeSpawn,  # noqa: F811
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", 2)
    monkeypatch.setattr(assignments, "MAX_ASSIGNMENTS", 1)
    env = make_spawn()
    db = env.state.ctx.db
    keys = _keys(db, {"ann": "instructor", "lea": "learner", "leo": "learner",
                      "lia": "learner"})
    origin = {"origin": env.url}
    with env.client() as c:
        a = c.post("/v1/cohorts", json={"name": "Net A"}, headers=keys["ann"]).json()[
            "cohort_id"]
        code = c.post(f"/v1/cohorts/{a}/invites", json={"days": 7},
                      headers=keys["ann"]).json()["invite"]

        def learners() -> list[str]:
            return [m["subject"] for m in c.get(f"/v1/cohorts/{a}", headers=keys["ann"])
                    .json()["learners"]]

        for who in ("lea", "leo"):
            assert c.post("/v1/cohorts/join", json={"invite": code},
                          headers=keys[who]).status_code == 200
        # A third learner with the same link: refused, naming the cap.
        full = c.post("/v1/cohorts/join", json={"invite": code}, headers=keys["lia"])
        assert (full.status_code, full.json()["error"]) == (409, "cohort_full"), full.text
        assert "at most 2 learners" in full.json()["message"]
        assert full.json()["details"][0]["field"] == "cohort_id"
        again = c.post("/v1/cohorts/join", json={"invite": code}, headers=keys["lea"])
        assert again.status_code == 200  # a member joining again is no new member
        # ... and through the link's page.
        _signin(c, env.url, keys["lia"])
        page = c.post(f"/join/{code}", data={"csrf": _csrf(c, f"/join/{code}")},
                      headers=origin)
        assert page.status_code == 409 and "at most 2 learners" in page.text
        c.cookies.clear()
        assert learners() == ["lea", "leo"]

        # The instructor: a roster with one member and one newcomer is refused whole.
        roster = c.post(f"/v1/cohorts/{a}/enrolments", content="subject\nlea\nlou\n",
                        headers={**keys["ann"], **CSV})
        assert (roster.status_code, roster.json()["error"]) == (409, "cohort_full")
        assert "nobody was enrolled" in roster.json()["message"]
        _signin(c, env.url, keys["ann"])
        form = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                      data={"csrf": _csrf(c, "/teach"), "roster": "lou\nlia\n"})
        assert form.status_code == 409 and "at most 2 learners" in form.text
        c.cookies.clear()
        assert learners() == ["lea", "leo"]

        # Assignments: one allowed here, the second refused.
        body = {"template_id": "lab-netplus", "opens_at": "2026-01-01T00:00:00Z",
                "closes_at": "2027-01-01T00:00:00Z"}
        first = c.post(f"/v1/cohorts/{a}/assignments", json=body, headers=keys["ann"])
        assert first.status_code == 201, first.text
        second = c.post(f"/v1/cohorts/{a}/assignments", json=body, headers=keys["ann"])
        assert (second.status_code, second.json()["error"]) == (409, "cohort_assignments_full")
        assert "at most 1 assignments" in second.json()["message"]
        assert len(c.get(f"/v1/cohorts/{a}/assignments", headers=keys["ann"]).json()[
            "assignments"]) == 1


PEOPLE = ["a@x.org", "b:c", "lea", "leo", "z.z"]


def test_dashboard_pages_refuse_crafted_input(make_spawn: MakeSpawn  # noqa: F811
                                              ) -> None:
    env = make_spawn()
    db = env.state.ctx.db
    keys = _keys(db, {"ann": "instructor", "bob": "instructor", "lea": "learner"})
    a = create_cohort(db, ANN, "Net A").cohort_id
    cohorts.enrol_subjects(db, ANN, a, list(reversed(PEOPLE)))
    b = create_cohort(db, Manager("acme", "bob", "instructor"), "Net B").cohort_id
    cohorts.enrol_subjects(db, Manager("acme", "bob", "instructor"), b, ["bea"])
    now = datetime.now(UTC)
    assignments.create_assignment(db, ANN, a, template_id="lab-netplus", opens_at=now,
                                  closes_at=now + timedelta(hours=1), attempts_allowed=1,
                                  hints_allowed=True, known_templates={"lab-netplus"})
    api = f"/v1/cohorts/{a}/dashboard"
    with env.client() as c:
        bad = [("limit=0", "limit"), ("limit=501", "limit"), ("limit=-1", "limit"),
               ("limit=1e2", "limit"), ("limit=abc", "limit"), ("limit=", "limit"),
               ("limit=2&limit=3", "limit"), ("after=lea%0A", "after"),
               ("after=..%2Flea", "after"), ("after=", "after"), ("after=le%00a", "after"),
               (f"after={'a' * 129}", "after"), ("after=%27%20OR%201%3D1--", "after"),
               ("after=lea&after=leo", "after"), ("after=%3Cscript%3E", "after")]
        for query, field in bad:
            r = c.get(f"{api}?{query}", headers=keys["ann"])
            assert (r.status_code, r.json()["error"]) == (422, "validation_error"), query
            assert r.json()["details"][0]["field"] == field, query
            assert r.json()["message"].startswith(f"{field}: "), query
        # Valid pages keep the scope: another instructor 404, a learner 403.
        assert c.get(f"{api}?limit=1", headers=keys["bob"]).status_code == 404
        assert c.get(f"{api}?limit=1", headers=keys["lea"]).status_code == 403
        # `after` naming a learner of another cohort (or nobody) only says where to start.
        r = c.get(f"{api}?after=bea", headers=keys["ann"]).json()
        assert r["learners"] == ["lea", "leo", "z.z"]  # (ids are random hex: "bea" may be in one)
        assert "bea" not in {row["subject"] for a in r["assignments"] for row in a["rows"]}

        walked, after = [], None
        while True:
            part = c.get(api, params={"limit": "2", **({"after": after} if after else {})},
                         headers=keys["ann"]).json()
            walked += [row["subject"] for row in part["assignments"][0]["rows"]]
            assert part["assignments"][0]["learners"] == len(PEOPLE)
            after = part["next"]
            if after is None:
                break
        assert walked == sorted(PEOPLE)

        # The page: a crafted query is an error page, the next page's link is escaped.
        _signin(c, env.url, keys["ann"])
        shown = c.get(f"/teach/cohorts/{a}?after=%22%3E%3Cscript%3E")
        assert shown.status_code == 422 and "<script>" not in shown.text
        first = c.get(f"/teach/cohorts/{a}?limit=1")
        assert first.status_code == 200
        assert f'href="/teach/cohorts/{a}?limit=1&amp;after=a%40x.org"' in first.text
        assert first.text.count('class="learner-row"') == 1
        second = c.get(f"/teach/cohorts/{a}?limit=1&after=a%40x.org")
        assert 'data-subject="b:c"' in second.text
        assert f'href="/teach/cohorts/{a}?limit=1&amp;after=b%3Ac"' in second.text
        assert f'href="/teach/cohorts/{a}?limit=1"' in second.text  # back to the first
        last = c.get(f"/teach/cohorts/{a}?limit=1&after=leo").text
        assert 'data-subject="z.z"' in last and 'id="next-page"' not in last
        # The CSV stays whole.
        csv = c.get(f"/teach/cohorts/{a}/dashboard.csv?limit=1").text
        assert all(f",{p}," in csv for p in PEOPLE)


def test_sign_in_goes_on_when_a_group_cohort_is_full(
        app: TestClient, op: LocalProvider,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", 1)
    db = app.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    olga = Manager("acme", "olga", "operator")
    full = create_cohort(db, olga, "Net 2026", idp_group="netplus-2026").cohort_id
    room = create_cohort(db, olga, "Teachers", idp_group="teachers").cohort_id
    cohorts.enrol_subjects(db, olga, full, ["zed"])
    with caplog.at_level(logging.WARNING, logger="forge.classroom.cohorts"):
        done = app.get(login(op, begin(app), "ada"))  # ada: teachers and netplus-2026
    assert done.status_code == 200 and "Signed in" in done.text
    assert "forge_session" in done.headers["set-cookie"]
    assert enrolled_cohorts(db, "acme", "ada") == [room]
    warned = [r.getMessage() for r in caplog.records if "group enrolment" in r.getMessage()]
    # The cohort id is random hex, which may hold "ada": look at the rest of the line.
    assert len(warned) == 1 and full in warned[0] and "ada" not in warned[0].replace(full, "")


def test_an_lms_launch_into_a_full_course_is_refused(shared: World,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = shared.forge.db
    course = lti_links.course_of(db, "emulator", shared.acme.course_id)
    assert course is not None
    assert launch_learner(shared.forge.url, shared.acme, shared.assignment_id,
                          "cap-ada").status == 200
    with db.read() as sess:
        seated = len(list(sess.scalars(select(Enrolment.subject).where(
            Enrolment.cohort_id == course.cohort_id))))
    monkeypatch.setattr(cohorts, "MAX_MEMBERS", seated)
    refused(_launch(shared, "cap-bo"), 409, f"full: it holds at most {seated} learners")
    with db.read() as sess:
        assert sess.get(Enrolment, (course.cohort_id, "lti.cap-bo")) is None
    assert launch_learner(shared.forge.url, shared.acme, shared.assignment_id,
                          "cap-ada").status == 200  # already in: her next launch works
