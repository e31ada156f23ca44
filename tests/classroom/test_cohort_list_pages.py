"""The list of cohorts an operator or instructor manages, a page at a time.

Cohorts are never deleted and every LMS course launched makes one, so an operator's list
grows semester after semester. Before, `GET /v1/cohorts` answered every cohort of the
tenant at once and `/teach` read every learner of every class only to print a count (a
query per class). Now both read a page, newest first (`limit`, `after`, `next`; anything
else 422 naming the field), and `/teach` counts the learners of its page in one query.
Real spawn_service (uvicorn), real nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

import re

import httpx
import pytest

from forge.classroom import cohorts
from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role
from forge.services.spawn.web import teach

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401


def _key(db: object, tenant: str, who: str, role: str) -> dict[str, str]:
    record_role(db, tenant, who, role, source="test")  # type: ignore[arg-type]
    return {"x-api-key": create_api_key(db, tenant, who).plaintext}  # type: ignore[arg-type]


def test_cohorts_are_listed_a_page_at_a_time(make_spawn: MakeSpawn,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(teach, "TEACH_PAGE", 2)
    env = make_spawn()
    db = env.state.ctx.db
    olga = _key(db, "acme", "olga", "operator")
    gina = _key(db, "globex", "gina", "operator")
    with env.client() as c:
        made = [c.post("/v1/cohorts", json={"name": f"Class {i}"}, headers=olga).json()[
            "cohort_id"] for i in range(5)]
        theirs = c.post("/v1/cohorts", json={"name": "Other"}, headers=gina).json()["cohort_id"]
        roster = c.post(f"/v1/cohorts/{made[-1]}/enrolments", content="lea\nleo\nlia\n",
                        headers={**olga, "content-type": "text/csv"})
        assert roster.status_code == 200, roster.text

        seen: list[str] = []
        after: str | None = None
        while True:
            params = {"limit": "2", **({"after": after} if after else {})}
            page = c.get("/v1/cohorts", params=params, headers=olga).json()
            assert len(page["cohorts"]) <= 2
            seen += [x["cohort_id"] for x in page["cohorts"]]
            after = page["next"]
            if after is None:
                break
        assert seen == made[::-1]  # newest first, each once, none of another tenant's
        whole = c.get("/v1/cohorts", headers=olga).json()
        assert [x["cohort_id"] for x in whole["cohorts"]] == made[::-1]
        assert whole["next"] is None

        for params in ({"limit": "0"}, {"limit": str(cohorts.MAX_COHORT_PAGE + 1)},
                       {"limit": "x"}, {"after": theirs}, {"after": "coh-zz"},
                       {"after": made[0] + "\n"}):
            bad = c.get("/v1/cohorts", params=params, headers=olga)
            assert bad.status_code == 422, (params, bad.text)
            assert next(iter(params)) in bad.text, bad.text

        # /teach: the newest two classes with their learner counts, then the older ones.
        web = httpx.Client(base_url=env.url, timeout=20)
        assert web.post("/signin", data={"api_key": olga["x-api-key"]},
                        headers={"origin": env.url}).status_code == 303
        first = web.get("/teach")
        assert first.status_code == 200
        assert "Class 4" in first.text and "Class 3" in first.text
        assert "Class 2" not in first.text and "3 learners" in first.text
        older = re.search(r'href="(/teach\?after=[^"]+)">Older classes', first.text)
        assert older is not None
        page_two = older.group(1).replace("&amp;", "&")
        second = web.get(page_two)
        assert "Class 2" in second.text and "Class 4" not in second.text
        assert '<a href="/teach">Newest classes</a>' in second.text  # a way back to the first
        assert "Newest classes" not in first.text

        # A form sent from the second page comes back to it, with its notice (an
        # instructor of many classes is not sent to the first page after each one).
        csrf = re.search(r'name="csrf" value="([^"]+)"', second.text)
        after = re.search(r'name="after" value="([^"]+)"', second.text)
        assert csrf is not None and after is not None
        origin = {"origin": env.url}
        sent = web.post(f"/teach/cohorts/{made[2]}/roster", headers=origin, data={
            "csrf": csrf.group(1), "after": after.group(1), "roster": "lou\n"})
        assert sent.status_code == 303 and sent.headers["location"] == page_two, sent.text
        back = web.get(sent.headers["location"])
        assert "1 learner newly enrolled." in back.text and "Class 2" in back.text
        assert "Class 4" not in back.text
        assigned = web.post(f"/teach/cohorts/{made[2]}/assignments", headers=origin, data={
            "csrf": csrf.group(1), "after": after.group(1), "template_id": "lab-netplus",
            "opens_at": "2026-01-01T09:00", "closes_at": "2099-01-01T09:00"})
        assert assigned.status_code == 303, assigned.text
        assert assigned.headers["location"].startswith(page_two + "&assigned=asg-")
        # Anything but a cohort id in `after` is dropped: back to the first page.
        for bad in ("https://elsewhere.example/", "coh-zz", made[2] + "\n/../x"):
            sent = web.post(f"/teach/cohorts/{made[2]}/roster", headers=origin, data={
                "csrf": csrf.group(1), "after": bad, "roster": "lou\n"})
            assert sent.status_code == 303 and sent.headers["location"] == "/teach", bad
        web.close()
