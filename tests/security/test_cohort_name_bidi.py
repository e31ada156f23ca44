"""Attack: an instructor names a class with a bidi override (U+202E) or isolate, so the
text after the name reads reversed wherever others read it: the learners' invite page and
assignment list, a co-instructor's or operator's /teach and dashboard, the CSV's cohort
column ("Other \u202eclass" showed as "Other ssalc", and a title "Dashboard: Other
\u202eclass · FrostGate Forge" as "Dashboard: Other egroF etaGtsorF · ssalc").

Before: a typed name kept any bidi control (only an LMS course's title lost them). After:
the API and the /teach form refuse one in `name` or `idp_group` (422 naming the field,
no class made); the marks LRM and RLM, which reorder nothing outside the name, stay a
name's. Real spawn_service (uvicorn), SQLite and PostgreSQL. A name stored before the
refusal came loses its bidi controls at the upgrade (migration 0015).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from forge.classroom.cohort_names import writable
from forge.store import upgrade

from ..conftest import SQLITE_ONLY
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


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_a_name_stored_before_the_refusal_loses_its_bidi_controls(
        tmp_path: Path, engine: str, caplog: pytest.LogCaptureFixture) -> None:
    """A class named with U+202E before such names were refused kept it: /teach, the
    dashboard, the learners' /tracks and invite page, the CSV and the API all showed
    "Other \u202eclass" (read "Other ssalc"). The upgrade makes each such name one the
    API takes; names that were writable, right-to-left ones too, stay as they were.
    A group with such a character (which no instructor can change) is dropped, not
    cleaned into another group that would start enrolling people (migration 0016)."""
    path = tmp_path / "old.db"
    upgrade(f"sqlite:///{path}", "0014")
    names = {"coh-1": "Other \u202eclass =x", "coh-2": "\u2066\u2069", "coh-3": "Net\u0007 A",
             "coh-4": "\u05e8\u05e9\u05ea\u200f 101\u200e", "coh-5": "Net  B"}
    groups = {"coh-1": "net\u202e101", "coh-2": "net-\u2067b", "coh-3": "net\u0000c",
              "coh-4": "\u05e8\u05e9\u05ea\u200f", "coh-5": None}
    with sqlite3.connect(path) as raw:
        raw.executemany("INSERT INTO cohorts (cohort_id, tenant_id, name, created_by, "
                        "idp_group, created_at) VALUES (?, 'acme', ?, 'ann', ?, "
                        "'2026-11-01 10:00:00')",
                        [(c, n, groups[c]) for c, n in names.items()])
    with caplog.at_level("WARNING", logger="forge.store.migrations"):
        upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as raw:
        got = {c: (n, g) for c, n, g in
               raw.execute("SELECT cohort_id, name, idp_group FROM cohorts").fetchall()}
    assert got == {"coh-1": ("Other class =x", None), "coh-2": ("coh-2", None),
                   "coh-3": ("Net A", None), "coh-4": (names["coh-4"], groups["coh-4"]),
                   "coh-5": ("Net  B", None)}
    assert all(writable(n) and (g is None or writable(g)) for n, g in got.values())
    dropped = sorted(r.getMessage() for r in caplog.records
                     if r.getMessage().startswith("cohort group dropped"))
    assert [m.split()[4] for m in dropped] == ["cohort=coh-1", "cohort=coh-2",
                                               "cohort=coh-3"], dropped
    assert "group='net\\u202e101'" in dropped[0], dropped
