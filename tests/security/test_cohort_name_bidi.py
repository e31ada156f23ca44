"""Attack: an instructor names a class with a bidi override (U+202E) or isolate, so the
text after the name reads reversed wherever others read it: the learners' invite page and
assignment list, a co-instructor's or operator's /teach and dashboard, the CSV's cohort
column ("Other \u202eclass" showed as "Other ssalc", and a title "Dashboard: Other
\u202eclass · FrostGate Forge" as "Dashboard: Other egroF etaGtsorF · ssalc").

Before: a typed name kept any bidi control (only an LMS course's title lost them). After:
the API and the /teach form refuse one in `name` or `idp_group` (422 naming the field,
no class made); the marks LRM and RLM, which reorder nothing outside the name, stay a
name's. Real spawn_service (uvicorn), SQLite and PostgreSQL.
"""

from __future__ import annotations

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from .test_cohort_caps import _csrf, _keys, _signin

OVERRIDES = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_a_bidi_override_in_a_class_name_is_refused(make_spawn: MakeSpawn  # noqa: F811
                                                    ) -> None:
    env = make_spawn()
    ann = _keys(env.state.ctx.db, {"ann": "instructor"})["ann"]
    with env.client() as c:
        for ch in OVERRIDES:
            for body, field in (({"name": f"Other {ch}class"}, "name"),
                                ({"name": "Net", "idp_group": f"net{ch}101"}, "idp_group")):
                got = c.post("/v1/cohorts", json=body, headers=ann)
                assert got.status_code == 422, (repr(ch), got.text)
                assert got.json()["details"][0]["field"] == field, got.text
                assert "bidi override" in got.json()["details"][0]["problem"], got.text
        assert c.get("/v1/cohorts", headers=ann).json()["cohorts"] == []

        _signin(c, env.url, ann)
        form = c.post("/teach/cohorts", headers={"origin": env.url},
                      data={"csrf": _csrf(c, "/teach"), "name": "Other \u202eclass"})
        assert form.status_code == 422, form.text
        assert "no control character or bidi override" in form.text, form.text
        c.cookies.clear()
        assert c.get("/v1/cohorts", headers=ann).json()["cohorts"] == []

        # Right-to-left text and its marks are a name's: nothing outside it moves.
        named = c.post("/v1/cohorts", json={"name": "\u05e8\u05e9\u05ea\u200f 101\u200e"},
                       headers=ann)
        assert named.status_code == 201, named.text
