"""The instructor's /teach page on a live spawn_service: create a class, make an invite
link, add a pasted roster (a bad line adds nobody), assign a lab; learners are refused."""

from __future__ import annotations

import re

import httpx

from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _signin(c: httpx.Client, url: str, key: str) -> None:
    assert c.post("/signin", data={"api_key": key}, headers={"origin": url}).status_code == 303


def test_instructor_runs_a_class_from_the_teach_page(make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn()
    db = env.state.ctx.db
    record_role(db, "acme", "ann", "instructor", source="test")
    ann = create_api_key(db, "acme", "ann").plaintext
    lea = create_api_key(db, "acme", "lea").plaintext
    origin = {"origin": env.url}
    lab = env.state.track_templates["netplus"]
    with env.client() as c:
        assert c.get("/teach").headers["location"] == "/signin?next=/teach"
        _signin(c, env.url, ann)
        first = c.get("/teach")
        assert first.status_code == 200 and "No classes yet." in first.text
        csrf = _csrf(first.text)
        made = c.post("/teach/cohorts", data={"csrf": csrf, "name": "Networking 101"},
                      headers=origin)
        assert made.status_code == 303
        page = c.get("/teach").text
        assert "Networking 101" in page and "0 learners" in page
        cohort_id = re.search(r'action="/teach/cohorts/(coh-[0-9a-f]+)/invite"', page)
        assert cohort_id is not None
        base = f"/teach/cohorts/{cohort_id.group(1)}"

        invite = c.post(f"{base}/invite", data={"csrf": csrf}, headers=origin)
        assert invite.status_code == 200
        assert re.search(r'id="invite-url"[^>]*value="http://[^"]+/join/fgi_', invite.text)

        bad = c.post(f"{base}/roster", data={"csrf": csrf, "roster": "lea\nnot an id\n"},
                     headers=origin)
        assert bad.status_code == 422 and "line 2" in bad.text
        assert "0 learners" in c.get("/teach").text  # nobody of the bad roster
        good = c.post(f"{base}/roster", data={"csrf": csrf, "roster": "lea\nleo\n"},
                      headers=origin)
        assert good.status_code == 303

        assigned = c.post(f"{base}/assignments", headers=origin, data={
            "csrf": csrf, "template_id": lab, "opens_at": "2026-12-01T09:00",
            "closes_at": "2026-12-08T17:00", "attempts_allowed": "2"})
        assert assigned.status_code == 303, assigned.text
        page = c.get("/teach").text
        assert "2 learners" in page
        assert (f"{lab}: opens 2026-12-01T09:00:00Z, due 2026-12-08T17:00:00Z (UTC), "
                "2 attempts, no hints") in page
        forged = c.post(f"{base}/roster", data={"csrf": "x", "roster": "eve"}, headers=origin)
        assert forged.status_code == 403

        c.cookies.clear()
        _signin(c, env.url, lea)
        assert c.get("/teach").status_code == 403
