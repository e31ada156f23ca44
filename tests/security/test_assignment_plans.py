"""An instructor assigning a lab no plan includes is told so (probe AL).

Before: `POST /v1/cohorts/{id}/assignments` (and the /teach form) accepted a lab that
no plan of the platform includes, and the whole class found out at its first Start
(403 "plan … does not include track …"), on the day of the class. After: the answer
names the plans whose learners can start the lab (`plans`) and carries a `warning`
when there is none, and the page says the same; the assignment is still made (the
operator may add the track to a plan), and it still unlocks nothing. Real
spawn_service (uvicorn), real nats-server, SQLite and PostgreSQL; a plans file
without the ccna track.
"""

from __future__ import annotations

from pathlib import Path

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from .test_cohort_caps import _csrf, _keys, _signin

PLANS = """plans:
  FREE:
    tracks: [netplus, cissp]
    tiers: [foundation]
    spawns_per_minute: 5
    tenant_spawns_per_minute: 60
    concurrent: 1
    tenant_concurrent: 20
    max_lab_minutes: 60
    retention_days: 7
  TEAM:
    tracks: [netplus, cissp]
    tiers: [foundation, intermediate, advanced]
    spawns_per_minute: 20
    tenant_spawns_per_minute: 600
    concurrent: 10
    tenant_concurrent: 200
    max_lab_minutes: 240
    retention_days: 365
"""
WINDOW = {"opens_at": "2026-01-01T00:00:00Z", "closes_at": "2099-01-01T00:00:00Z"}


def test_assigning_a_lab_no_plan_includes_says_so(
    make_spawn: MakeSpawn, tmp_path: Path,  # noqa: F811
) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text(PLANS, encoding="utf-8")
    env = make_spawn(FORGE_PLANS_FILE=str(plans))
    db = env.state.ctx.db
    keys = _keys(db, {"ann": "instructor", "bob": "instructor"})
    with env.client() as c:
        a = c.post("/v1/cohorts", json={"name": "Net A"}, headers=keys["ann"]).json()[
            "cohort_id"]
        fine = c.post(f"/v1/cohorts/{a}/assignments", headers=keys["ann"],
                      json={"template_id": "lab-netplus", **WINDOW})
        assert fine.status_code == 201, fine.text
        assert fine.json()["plans"] == ["FREE", "TEAM"] and "warning" not in fine.json()
        advanced = c.post(f"/v1/cohorts/{a}/assignments", headers=keys["ann"],
                          json={"template_id": "lab-cissp", **WINDOW})
        assert advanced.json()["plans"] == ["TEAM"]  # FREE has the track, not the tier
        nobody = c.post(f"/v1/cohorts/{a}/assignments", headers=keys["ann"],
                        json={"template_id": "lab-ccna", **WINDOW})
        assert nobody.status_code == 201, nobody.text
        assert nobody.json()["plans"] == []
        assert nobody.json()["warning"].startswith("no plan includes lab-ccna: no learner can")

        def assign(template_id: str) -> str:
            """The /teach form; the page it redirects to (a reload assigns nothing)."""
            made = c.post(f"/teach/cohorts/{a}/assignments", headers={"origin": env.url},
                          data={"csrf": _csrf(c, "/teach"), "template_id": template_id,
                                "opens_at": "2026-01-01T00:00",
                                "closes_at": "2099-01-01T00:00"})
            assert made.status_code == 303, made.text[:300]
            return c.get(made.headers["location"]).text

        def count() -> int:
            return len(c.get(f"/v1/cohorts/{a}/assignments", headers=keys["ann"]).json()[
                "assignments"])

        _signin(c, env.url, keys["ann"])
        assert "Warning: no plan includes lab-ccna" in assign("lab-ccna")
        assert "lab-netplus assigned; learners on FREE, TEAM can start it." in assign(
            "lab-netplus")
        before = count()
        again = c.get(f"/teach?assigned={nobody.json()['assignment_id']}")
        assert "Warning: no plan includes lab-ccna" in again.text and count() == before
        # The line comes from the store: an id that is not Bob's shows nothing to him.
        _signin(c, env.url, keys["bob"])
        theirs = c.get(f"/teach?assigned={nobody.json()['assignment_id']}")
        assert theirs.status_code == 200 and "no plan includes" not in theirs.text
        for odd in ("asg-<script>", "x" * 5000):
            assert "notice" not in c.get("/teach", params={"assigned": odd}).text
