"""The dashboard's learners a page at a time: every learner once, in one order on every
engine, the figures per assignment those of the whole cohort on every page, and `limit` or
`after` other than a page asks for refused naming the field (real SQLite and PostgreSQL;
the same over HTTP with real scores in `test_dashboard.py`, crafted input in
`tests/security/test_cohort_caps.py`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forge.classroom import assignments, cohorts, dashboard
from forge.errors import ForgeError
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Assignment

from .test_dashboard import ANN, LAB, T0, lab_row

PAGED = ["Zoe", "a-c", "a.b", "ab", "b@x.org", "lea", "leo", "lia", "lou", "z:1"]


def test_pages_walk_every_learner_once_and_keep_the_totals(db_url: str) -> None:
    """Learners by subject as Python orders them (upper case first, `-` before `.`) on
    both engines, whatever the database's collation; pages of 3 give each learner once;
    every page carries the whole cohort's totals per assignment."""
    upgrade(db_url)
    db = Database(db_url)
    c = cohorts.create_cohort(db, ANN, "Paged").cohort_id
    cohorts.enrol_subjects(db, ANN, c, list(reversed(PAGED)))
    now = datetime.now(UTC)
    a1 = assignments.create_assignment(
        db, ANN, c, template_id=LAB, opens_at=now - timedelta(hours=2),
        closes_at=now + timedelta(hours=1), attempts_allowed=2, hints_allowed=True,
        known_templates={LAB}).assignment_id
    scores: dict[str, dict[str, object]] = {}
    for n, (who, ok) in enumerate((("Zoe", True), ("ab", False), ("lia", True), ("z:1", False))):
        sid = f"scn-{n:016x}"
        lab_row(db, sid, a1, who, 1, start=T0, ran=timedelta(minutes=5 + n), end="completed",
                hints=n)
        scores[sid] = {"tenant_id": "acme", "subject": who, "score": 1.0 if ok else 0.5,
                       "passed": 2 if ok else 1, "total": 2,
                       "failed": [] if ok else ["route-present"],
                       "completed_at": T0.isoformat()}
    lab_row(db, "scn-" + "e" * 16, a1, "lou", 1, start=T0, ran=timedelta(minutes=9),
            end="expired")
    data = dashboard.cohort_labs(db, ANN, c)
    assert data.learners == sorted(PAGED)

    def describe(_t: str, _c: str) -> str:
        return ""
    whole = dashboard.figures(data, scores, "acme", describe)
    assert whole["next"] is None and whole["learners"] == sorted(PAGED)
    totals = {k: v for k, v in whole["assignments"][0].items() if k != "rows"}
    assert (totals["learners"], totals["started"], totals["finished"]) == (10, 5, 4)
    assert (totals["mean_score"], totals["hints_used"]) == (0.75, 6)
    assert totals["most_failed"] == [{"criterion": "route-present", "description": "",
                                      "learners": 2}]
    seen: list[str] = []
    rows: list[dict[str, object]] = []
    after: str | None = None
    for _ in range(len(PAGED)):
        part = dashboard.figures(data, scores, "acme", describe, dashboard.Page(3, after))
        assert {k: v for k, v in part["assignments"][0].items() if k != "rows"} == totals
        assert part["total_learners"] == 10 and len(part["learners"]) <= 3
        seen += part["learners"]
        rows += part["assignments"][0]["rows"]
        after = part["next"]
        if after is None:
            break
        assert after == part["learners"][-1]
    assert seen == sorted(PAGED)  # each once, in order
    assert rows == whole["assignments"][0]["rows"]
    # A page after a subject nobody has (a learner gone meanwhile) starts at the next one.
    gap = dashboard.figures(data, scores, "acme", describe, dashboard.Page(2, "lean"))
    assert (gap["learners"], gap["next"]) == (["leo", "lia"], "lia")
    last = dashboard.figures(data, scores, "acme", describe, dashboard.Page(500, "z:1"))
    assert (last["learners"], last["next"], last["total_learners"]) == ([], None, 10)
    # Who is stuck, without paging through the class: only the learners with a status
    # (here: started, no result yet), paged the same way, the totals still the class's.
    for status, who in (("started", ["lou"]), ("finished", ["Zoe", "ab", "lia", "z:1"]),
                        ("not started", ["a-c", "a.b", "b@x.org", "lea", "leo"])):
        page = dashboard.check_page([], [], [status])
        found = dashboard.figures(data, scores, "acme", describe, page)
        assert (found["learners"], found["matching_learners"], found["next"]) == (
            who, len(who), None)
        assert {r["status"] for r in found["assignments"][0]["rows"]} == {status}
        assert {k: v for k, v in found["assignments"][0].items() if k != "rows"} == totals
    first = dashboard.figures(data, scores, "acme", describe,
                              dashboard.Page(2, None, "not started"))
    assert (first["learners"], first["next"]) == (["a-c", "a.b"], "a.b")
    db.dispose()


@pytest.mark.parametrize(("limits", "afters", "field"), [
    (["0"], [], "limit"), (["501"], [], "limit"), (["-1"], [], "limit"),
    (["1e2"], [], "limit"), ([" 5"], [], "limit"), (["5\n"], [], "limit"),
    (["05"], [], "limit"), ([""], [], "limit"), (["9" * 5000], [], "limit"),
    (["10", "20"], [], "limit"), ([], ["lea\n"], "after"), ([], ["../lea"], "after"),
    ([], [""], "after"), ([], ["a" * 129], "after"), ([], ["lea", "leo"], "after"),
    ([], ["le\x00a"], "after"), ([], ["' OR 1=1 --"], "after"),
])
def test_a_bad_page_is_refused_naming_its_field(limits: list[str], afters: list[str],
                                               field: str) -> None:
    with pytest.raises(ForgeError) as bad:
        dashboard.check_page(limits, afters)
    assert (bad.value.status, bad.value.code) == (422, "validation_error")
    assert bad.value.message.startswith(f"{field}: ")
    assert bad.value.details[0]["field"] == field


@pytest.mark.parametrize("statuses", [["stuck"], ["Started"], [""], ["started", "finished"]])
def test_a_bad_status_filter_is_refused_naming_it(statuses: list[str]) -> None:
    field = "status"
    with pytest.raises(ForgeError) as bad:
        dashboard.check_page([], [], statuses)
    assert (bad.value.status, bad.value.code) == (422, "validation_error")
    assert bad.value.message.startswith(f"{field}: ")
    assert bad.value.details[0]["field"] == field


def test_a_good_page_is_read() -> None:
    assert dashboard.check_page([], []) == dashboard.Page(100, None)
    assert dashboard.check_page(["1"], ["b@x.org"]) == dashboard.Page(1, "b@x.org")
    assert dashboard.check_page(["500"], []) == dashboard.Page(500, None)


def test_a_class_with_many_assignments_gets_fewer_learners_per_page(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's rows are learners times assignments: 100 learners of 200 assignments were 4 MB
    of JSON. A page now holds at most MAX_ROWS rows (here 12): with 4 assignments, 3
    learners a page whatever `limit` asks; `next` still walks every learner once."""
    monkeypatch.setattr(dashboard, "MAX_ROWS", 12)
    made = [Assignment(assignment_id=f"asg-{i}", cohort_id="coh-1", tenant_id="acme",
                       template_id=LAB, opens_at=T0, closes_at=T0 + timedelta(hours=1),
                       attempts_allowed=1, hints_allowed=True) for i in range(4)]
    data = dashboard.CohortLabs("coh-1", "Many", sorted(PAGED), made)
    seen: list[str] = []
    after: str | None = None
    for _ in range(len(PAGED)):
        part = dashboard.figures(data, {}, "acme", lambda _t, _c: "",
                                 dashboard.Page(100, after))
        assert part["page_size"] == 3 and len(part["learners"]) <= 3
        assert all(len(a["rows"]) == len(part["learners"]) for a in part["assignments"])
        assert sum(len(a["rows"]) for a in part["assignments"]) <= 12
        seen += part["learners"]
        after = part["next"]
        if after is None:
            break
    assert seen == sorted(PAGED)
    few = dashboard.CohortLabs("coh-1", "Few", sorted(PAGED), made[:1])
    one = dashboard.figures(few, {}, "acme", lambda _t, _c: "", dashboard.Page(5, None))
    assert one["page_size"] == 5 and len(one["learners"]) == 5  # the limit asked, when it fits
    whole = dashboard.figures(data, {}, "acme", lambda _t, _c: "")  # the CSV's: every learner
    assert whole["learners"] == sorted(PAGED)
