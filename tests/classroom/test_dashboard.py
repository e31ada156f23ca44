"""The instructor dashboard on a seeded cohort (issue 18 item 3): real spawn_service and
scoreboard (uvicorn on loopback), real nats-server, verdicts scored and signed by the real
scorer. Figures per assignment and learner (started, finished,
scores, time spent, hints, criteria most often failed), the same figures as CSV with
formula cells neutralised, a learner's timeline (SQLite: a real scorer and two services;
the same queries run on PostgreSQL in `tests/security/test_dashboard_scope.py`); and reads
that stay a fixed number of queries for 200 learners (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from forge.bus import NatsServer
from forge.classroom import assignments, cohorts, dashboard
from forge.classroom import dashboard_csv as dashboard_csv_module
from forge.classroom.assignments import iso
from forge.classroom.cohorts import Manager
from forge.classroom.dashboard_csv import dashboard_csv
from forge.classroom.timeline import learner_timeline
from forge.config import load_settings
from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.services.scoreboard.scoring import Scorer
from forge.services.spawn.app import build_app as build_spawn
from forge.services.spawn.web.dashboard_api import download_name
from forge.store.db import Database
from forge.store.finalized_audits import record_finalized_audit
from forge.store.migrate import upgrade
from forge.store.models import (
    Assignment,
    AssignmentAttempt,
    HintReveal,
    Scenario,
    ScenarioTransition,
    TaskCheckRun,
)
from forge.templates.registry import TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..live_server import live_server
from ..scoreboard.conftest import build_completion, store_of
from ..services.conftest import prod_environ, with_signing_key
from ..support.sql_statements import sql_statements

LAB = "lab-netplus"
ANN = Manager("acme", "ann", "instructor")
BOB = Manager("acme", "bob", "instructor")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def lab_row(db: Database, sid: str, assignment_id: str, subject: str, attempt: int, *,
            start: datetime, ran: timedelta, end: str, hints: int = 0,
            checks: tuple[tuple[str, bool], ...] = (), tenant: str = "acme") -> None:
    """A lab as spawn and the orchestrator leave it: its row, its state changes (running for
    `ran`, then submitted and graded, or expired), the attempt it was started for, the
    hints revealed and task checks run while it ran."""
    running = start + timedelta(seconds=10)
    moves = [(None, "pending", start), ("pending", "launching", start + timedelta(seconds=2)),
             ("launching", "running", running)]
    if end == "completed":
        moves += [("running", "grading", running + ran),
                  ("grading", "completed", running + ran + timedelta(seconds=20))]
    elif end != "running":
        moves += [("running", end, running + ran)]
    with db.session() as sess:
        row = sess.get(Scenario, sid)
        if row is None:
            row = Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id=tenant,
                           subject=subject, track="netplus", template_id=LAB, plan="PRO",
                           state=end, created_at=start, updated_at=start, details={})
            sess.add(row)
        row.state, row.created_at, row.template_id = end, start, LAB
        sess.flush()
        for src, dst, at in moves:
            sess.add(ScenarioTransition(scenario_id=sid, from_state=src, to_state=dst,
                                        reason="submitted" if dst == "grading" else None,
                                        at=at))
        sess.add(AssignmentAttempt(assignment_id=assignment_id, subject=subject,
                                   attempt=attempt, request_id="r-" + sid, scenario_id=sid,
                                   at=start))
        for i in range(hints):
            sess.add(HintReveal(scenario_id=sid, hint_index=i, tenant_id=tenant,
                                criterion="route-present", cost=0.05,
                                revealed_at=running + timedelta(minutes=1 + i)))
        for n, (criterion, passed) in enumerate(checks):
            sess.add(TaskCheckRun(scenario_id=sid, tenant_id=tenant, criterion=criterion,
                                  passed=passed, at=running + timedelta(minutes=2, seconds=n)))


@dataclass
class Seeded:
    """A live spawn_service reading a live scoreboard, and the seeded cohorts."""

    url: str
    db: Database
    keys: dict[str, dict[str, str]]
    cohort_a: str
    cohort_b: str
    a1: str
    a2: str
    labs: dict[str, str]
    board_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=20)


@pytest.fixture
def seeded(tmp_path: Path, nats: NatsServer) -> Iterator[Seeded]:
    """Cohort A (ann's; its name would be a spreadsheet formula) with learners lea, leo,
    lia, lou and two assignments of lab-netplus; cohort B (bob's) where lea also has a lab.

    A1, two attempts: lea failed route-present on her first lab (10 min, one hint, two task
    checks) and passed on her second (5 min); leo failed route-present (20 min, two
    hints); lia's lab expired after 7 min ungraded; lou never started. A2: nobody started.
    """
    db_url = f"sqlite:///{tmp_path / 'forge.db'}"
    board_settings = load_settings(prod_environ(
        with_signing_key(tmp_path / "board"), **nats.client_env(), FORGE_DB_URL=db_url))
    db = store_of(board_settings)
    scorer = Scorer(board_settings, TemplateRegistry.load(TEMPLATE_FIXTURES), db=db)

    def scored(subject: str, passed: bool) -> str:
        done = build_completion(board_settings, subject=subject, passed=passed)
        scorer.score(done.event)
        return done.scenario_id

    with live_server(build_scoreboard(board_settings)) as board_url, live_server(build_spawn(
            load_settings(prod_environ(tmp_path / "spawn", **nats.client_env(),
                                       FORGE_DB_URL=db_url, SCOREBOARD_URL=board_url)))
            ) as spawn_url:
        for who, role in (("ann", "instructor"), ("bob", "instructor")):
            record_role(db, "acme", who, role, source="test")
        keys = {who: {"x-api-key": create_api_key(db, "acme", who).plaintext}
                for who in ("ann", "bob", "lea")}
        a = cohorts.create_cohort(db, ANN, "=HYPERLINK(\"http://evil\")").cohort_id
        b = cohorts.create_cohort(db, BOB, "Net B").cohort_id
        cohorts.enrol_subjects(db, ANN, a, ["lea", "leo", "lia", "lou"])
        cohorts.enrol_subjects(db, BOB, b, ["lea"])

        def assign(who: Manager, cohort: str, hours: int) -> str:
            return assignments.create_assignment(  # the dashboard lists by opening time
                db, who, cohort, template_id=LAB, opens_at=T0 - timedelta(hours=7 - hours),
                closes_at=T0 + timedelta(hours=hours), attempts_allowed=2, hints_allowed=True,
                known_templates={LAB}).assignment_id

        a1, a2, b1 = assign(ANN, a, 5), assign(ANN, a, 6), assign(BOB, b, 5)
        labs = {"lea1": scored("lea", False), "lea2": scored("lea", True),
                "leo1": scored("leo", False), "leaB": scored("lea", True),
                "lia1": "scn-" + "1" * 16}
        lab_row(db, labs["lea1"], a1, "lea", 1, start=T0, ran=timedelta(minutes=10),
                end="completed", hints=1, checks=(("route-present", False),
                                                  ("saved-page", True)))
        lab_row(db, labs["lea2"], a1, "lea", 2, start=T0 + timedelta(minutes=30),
                ran=timedelta(minutes=5), end="completed")
        lab_row(db, labs["leo1"], a1, "leo", 1, start=T0, ran=timedelta(minutes=20),
                end="completed", hints=2)
        lab_row(db, labs["lia1"], a1, "lia", 1, start=T0, ran=timedelta(minutes=7),
                end="expired")
        lab_row(db, labs["leaB"], b1, "lea", 1, start=T0, ran=timedelta(minutes=50),
                end="completed", hints=3)
        yield Seeded(spawn_url, db, keys, a, b, a1, a2, labs, board_url)


def _summaries_asked(board_url: str, route: str = "/v1/admin/scores/summaries") -> int:
    """How many requests of `route` (score summaries) the scoreboard answered (/metrics)."""
    text = httpx.get(f"{board_url}/metrics", timeout=10).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("forge_http_requests_total{")
               and f'route="{route}"' in line)


@pytest.mark.usefixtures("sqlite_only_store")  # its queries run on PostgreSQL below and in
def test_dashboard_figures_csv_and_timeline(seeded: Seeded) -> None:  # the scope test
    with seeded.client() as c:
        got = c.get(f"/v1/cohorts/{seeded.cohort_a}/dashboard", headers=seeded.keys["ann"])
        assert got.status_code == 200, got.text
        d = got.json()
    assert d["learners"] == ["lea", "leo", "lia", "lou"]
    first, second = d["assignments"]
    assert first["assignment_id"] == seeded.a1 and second["assignment_id"] == seeded.a2
    rows = {r["subject"]: r for r in first["rows"]}
    assert {s: r["status"] for s, r in rows.items()} == {
        "lea": "finished", "leo": "finished", "lia": "started", "lou": "not started"}
    # lea: her best lab counts (passed everything on attempt 2); cohort B's lab is not here
    assert rows["lea"]["score"] == 1.0 and (rows["lea"]["passed"], rows["lea"]["total"]) == (2, 2)
    assert rows["lea"]["failed_criteria"] == [] and rows["lea"]["graded_lab"] == seeded.labs["lea2"]
    assert rows["lea"]["attempts_used"] == 2 and rows["lea"]["hints_used"] == 1
    assert rows["lea"]["time_spent_s"] == 15 * 60  # running time of both labs, not wall time
    assert rows["leo"]["score"] == pytest.approx(2 / 3, abs=1e-4)
    assert rows["leo"]["failed_criteria"] == ["route-present"]
    assert (rows["leo"]["time_spent_s"], rows["leo"]["hints_used"]) == (20 * 60, 2)
    assert (rows["lia"]["score"], rows["lia"]["time_spent_s"]) == (None, 7 * 60)
    assert (rows["lou"]["attempts_used"], rows["lou"]["started_at"]) == (0, None)
    assert (first["learners"], first["started"], first["finished"]) == (4, 3, 2)
    assert first["mean_score"] == pytest.approx((1.0 + 2 / 3) / 2, abs=1e-3)
    assert first["median_time_spent_s"] == 15 * 60  # of 7, 15 and 20 minutes
    assert first["hints_used"] == 3
    assert first["most_failed"] == [{"criterion": "route-present", "learners": 1,
                                     "description": "The learner host still routes to the dmz."}]
    assert (second["started"], second["finished"], second["mean_score"]) == (0, 0, None)

    # The CSV: the same figures, one line per learner and assignment, no formula cell. The
    # scores were read a moment ago: not asked of the scoreboard again (review CD: every
    # page asked about every graded lab of the class, seconds a page for a large one).
    asked = _summaries_asked(seeded.board_url)
    assert asked >= 1
    with seeded.client() as c:
        got = c.get(f"/v1/cohorts/{seeded.cohort_a}/dashboard.csv", headers=seeded.keys["ann"])
    assert _summaries_asked(seeded.board_url) == asked
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    csv_text = got.text
    # Named after the class (its name is a formula: only its letters and digits are kept).
    assert (f'filename="hyperlink-http-evil-{seeded.cohort_a}.csv"'
            in got.headers["content-disposition"])
    assert got.content.startswith(b"\xef\xbb\xbf")  # a BOM: Excel then reads UTF-8
    table = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert len(table) == 8
    by = {(r["assignment_id"], r["learner"]): r for r in table}
    leo = by[(seeded.a1, "leo")]
    assert (leo["status"], leo["failed_criteria"], leo["time_spent_min"],
            leo["hints_used"], leo["criteria_passed"], leo["criteria_total"]) == (
        "finished", "route-present", "20.0", "2", "1", "2")
    assert float(leo["score"]) == pytest.approx(2 / 3, abs=1e-4)
    assert by[(seeded.a2, "lou")]["status"] == "not started"
    assert {r["cohort"] for r in table} == {"'=HYPERLINK(\"http://evil\")"}
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in table for cell in r.values())

    # lea's timeline: her two labs of this cohort (not cohort B's), events in time order.
    with seeded.client() as c:
        got = c.get(f"/v1/cohorts/{seeded.cohort_a}/learners/lea/timeline",
                    headers=seeded.keys["ann"])
    assert got.status_code == 200, got.text
    labs = got.json()["labs"]
    assert [lab["scenario_id"] for lab in labs] == [seeded.labs["lea1"], seeded.labs["lea2"]]
    # Her two graded labs' recordings: one scoreboard request, not one per lab.
    assert [lab["recordings"] for lab in labs] == [[], []]
    assert _summaries_asked(seeded.board_url, "/v1/admin/scores/recordings") == 1
    assert _summaries_asked(seeded.board_url, "/v1/scores/{scenario_id}/recordings") == 0
    kinds = [e["kind"] for e in labs[0]["events"]]
    assert kinds == ["state", "state", "state", "hint", "check", "check", "submitted", "state"]
    assert labs[0]["events"][4] == {"at": labs[0]["events"][4]["at"], "kind": "check",
                                    "criterion": "route-present", "passed": False}
    assert labs[0]["events"][-1]["to"] == "completed"

    # The pages: the dashboard (linked from /teach) and the learner's timeline.
    with seeded.client() as c:
        assert c.post("/signin", data={"api_key": seeded.keys["ann"]["x-api-key"]},
                      headers={"origin": seeded.url}).status_code == 303
        assert f'href="/teach/cohorts/{seeded.cohort_a}"' in c.get("/teach").text
        shown = c.get(f"/teach/cohorts/{seeded.cohort_a}")
        assert shown.status_code == 200 and shown.headers["content-security-policy"]
        assert '<dd class="fig-finished">2 of 4</dd>' in shown.text
        assert "=HYPERLINK(&#34;http://evil&#34;)" in shown.text  # text, escaped
        assert c.get(f"/teach/cohorts/{seeded.cohort_a}/dashboard.csv").text == csv_text
        page = c.get(f"/teach/cohorts/{seeded.cohort_a}/learners/lea")
        assert page.status_code == 200 and "submitted for grading" in page.text
        assert "checked task <code>route-present</code>: not yet" in page.text
        # Who is stuck: the page shows only lia (started, no result yet), in every
        # assignment's table, with links to the other filters; a bad filter is a 422.
        stuck = c.get(f"/teach/cohorts/{seeded.cohort_a}", params={"status": "started"})
        assert stuck.status_code == 200
        assert re.findall(r'data-subject="([^"]+)"', stuck.text) == ["lia", "lia"]
        assert "1 of 4 learners are started in at least one assignment" in stuck.text
        assert '<strong aria-current="page">Started (no result yet)</strong>' in stuck.text
        assert (f'<a href="/teach/cohorts/{seeded.cohort_a}?limit=100&amp;status=not+started">'
                "Not started</a>") in stuck.text
        assert c.get(f"/teach/cohorts/{seeded.cohort_a}?status=stuck").status_code == 422


    # One learner a page: each learner once, in order; the totals are the whole cohort's.
    walked, after = [], None
    with seeded.client() as c:
        while True:
            query = {"limit": "1", **({"after": after} if after else {})}
            got = c.get(f"/v1/cohorts/{seeded.cohort_a}/dashboard", params=query,
                        headers=seeded.keys["ann"])
            assert got.status_code == 200, got.text
            part = got.json()
            assert part["total_learners"] == 4 and len(part["learners"]) == 1
            for mine, whole in zip(part["assignments"], d["assignments"], strict=True):
                assert {k: v for k, v in mine.items() if k != "rows"} == {
                    k: v for k, v in whole.items() if k != "rows"}
                walked.append((mine["assignment_id"], mine["rows"]))
            after = part["next"]
            if after is None:
                break
            assert after == part["learners"][-1]
    rows_of = {a["assignment_id"]: a["rows"] for a in d["assignments"]}
    for aid in rows_of:
        assert [r for a, rows in walked if a == aid for r in rows] == rows_of[aid]

    # An extension shows on the page and in the JSON row: who has one, until when.
    with seeded.client() as c:
        given = c.put(f"/v1/cohorts/{seeded.cohort_a}/assignments/{seeded.a2}/learners/lou/due",
                      json={"closes_at": "2099-01-01T00:00:00Z"}, headers=seeded.keys["ann"])
        assert given.status_code == 200, given.text
        got = c.get(f"/v1/cohorts/{seeded.cohort_a}/dashboard", headers=seeded.keys["ann"])
        lou = next(r for r in got.json()["assignments"][1]["rows"] if r["subject"] == "lou")
        assert (lou["due_at"], lou["due_extended"]) == ("2099-01-01T00:00:00Z", True)
        assert c.post("/signin", data={"api_key": seeded.keys["ann"]["x-api-key"]},
                      headers={"origin": seeded.url}).status_code == 303
        shown = c.get(f"/teach/cohorts/{seeded.cohort_a}").text
        assert shown.count('class="muted due-extended"') == 1
        assert ('(due <time class="utc" datetime="2099-01-01T00:00:00Z">2099-01-01 00:00:00 UTC'
                '</time>)') in shown  # in the reader's zone where the script runs

        # A lab graded (its verdict recorded signed) whose result the scoreboard no longer
        # has (a restore lost it): said on the row, not shown as work never handed in.
        with seeded.db.session() as sess:
            lab = sess.get(Scenario, seeded.labs["lia1"])
            assert lab is not None
            lab.state = "completed"
        record_finalized_audit(seeded.db, seeded.labs["lia1"], "0" * 64)
        lia = next(r for r in c.get(f"/v1/cohorts/{seeded.cohort_a}/dashboard",
                                    headers=seeded.keys["ann"]).json()["assignments"][0]["rows"]
                   if r["subject"] == "lia")
        assert (lia["status"], lia["score"], lia["result_missing"]) == ("started", None, True)
        shown = c.get(f"/teach/cohorts/{seeded.cohort_a}").text
        assert shown.count('class="result-missing"') == 1
        assert "<code>forge artifacts check</code>" in shown


@pytest.mark.usefixtures("sqlite_only_store")  # where the work runs, not the store
def test_the_figures_and_the_csv_are_made_off_the_event_loop(
        seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the caps (2,000 learners, 200 assignments) the CSV is 40 MB and 6 s of work: on
    the spawn service's event loop it froze every learner's terminal for as long."""
    from forge.services.spawn.web import dashboard_api

    on_loop: dict[str, list[bool]] = {"figures": [], "csv": []}

    def spy(name: str, real: Any) -> Any:
        def called(*args: Any) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop[name].append(True)
            except RuntimeError:
                on_loop[name].append(False)
            return real(*args)
        return called

    monkeypatch.setattr(dashboard, "figures", spy("figures", dashboard.figures))
    monkeypatch.setattr(dashboard_csv_module, "learner_cell",
                        spy("csv", dashboard_csv_module.learner_cell))
    with seeded.client() as c:
        got = c.get(f"/v1/cohorts/{seeded.cohort_a}/dashboard.csv", headers=seeded.keys["ann"])
        page = c.get(f"/v1/cohorts/{seeded.cohort_a}/dashboard", headers=seeded.keys["ann"])
    assert got.status_code == 200 and page.status_code == 200
    # The CSV is streamed (no length known up front), its rows written in the thread pool.
    assert "content-length" not in got.headers and got.headers["transfer-encoding"] == "chunked"
    assert on_loop == {"figures": [False], "csv": [False] * 8}
    assert dashboard_api.csv_chunks is dashboard_csv_module.csv_chunks


def test_a_large_class_streams_the_same_csv_in_bounded_pieces() -> None:
    """450 learners x 3 assignments (a lab each, graded for every other learner): the
    streamed download is, byte for byte, the BOM and the CSV of the whole dashboard, in
    pieces of at most LEARNERS_PER_CHUNK learners of one assignment."""
    made = [Assignment(assignment_id=f"asg-{i}", cohort_id="coh-1", tenant_id="acme",
                       template_id=LAB, opens_at=T0, closes_at=T0 + timedelta(hours=1),
                       attempts_allowed=2, hints_allowed=True) for i in range(3)]
    people = [f"l{i:03d}@x.org" for i in range(450)]
    labs = [dashboard.Lab(f"scn-{n:08x}{k:08x}", a.assignment_id, who, 1, "completed", T0,
                          running_s=60.0 * k + n, hints=n % 3)
            for n, who in enumerate(people) for k, a in enumerate(made)]
    scores = {lab.scenario_id: {"tenant_id": "acme", "subject": lab.subject, "score": 0.5,
                                "passed": 1, "total": 2, "failed": ["=cmd"],
                                "completed_at": T0.isoformat()}
              for lab in labs[::2]}
    data = dashboard.CohortLabs("coh-1", "+Net", people, made, labs,
                                {("asg-1", people[7]): T0 + timedelta(hours=9)})
    pieces = list(dashboard_csv_module.csv_chunks(data, scores, "acme"))
    whole = dashboard_csv(dashboard.figures(data, scores, "acme", lambda _t, _c: ""))
    assert "".join(pieces) == "\ufeff" + whole and whole.count("\r\n") == 1 + 3 * 450
    per = dashboard_csv_module.LEARNERS_PER_CHUNK
    assert len(pieces) == 1 + 3 * -(-450 // per)  # the header, then each assignment's pages
    assert max(p.count("\r\n") for p in pieces) == per


def test_reads_stay_a_fixed_number_of_queries(db_url: str) -> None:
    """200 learners x 3 assignments, a lab each: the same few queries as for none."""
    upgrade(db_url)
    db = Database(db_url)
    c = cohorts.create_cohort(db, ANN, "Big class").cohort_id
    people = [f"l{i:03d}" for i in range(200)]
    cohorts.enrol_subjects(db, ANN, c, people)
    now = datetime.now(UTC)
    ids = [assignments.create_assignment(
        db, ANN, c, template_id=LAB, opens_at=now - timedelta(hours=1),
        closes_at=now + timedelta(hours=1), attempts_allowed=1, hints_allowed=True,
        known_templates={LAB}).assignment_id for _ in range(3)]

    def count_queries(cohort: str) -> tuple[int, dashboard.CohortLabs]:
        with sql_statements(db) as seen:
            data = dashboard.cohort_labs(db, ANN, cohort)
        return len(seen), data

    small, _ = count_queries(c)
    with db.session() as sess:
        made = [(f"scn-{n:08x}{k:08x}", person, a) for n, person in enumerate(people)
                for k, a in enumerate(ids)]
        sess.add_all(Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id="acme",
                              subject=person, track="netplus", template_id=LAB, plan="PRO",
                              state="running", created_at=now, updated_at=now, details={})
                     for sid, person, _ in made)
        sess.flush()
        for sid, person, a in made:
            sess.add(ScenarioTransition(scenario_id=sid, from_state="launching",
                                        to_state="running", at=now, reason=None))
            sess.add(AssignmentAttempt(assignment_id=a, subject=person, attempt=1,
                                       request_id="r-" + sid, scenario_id=sid, at=now))
    big, data = count_queries(c)
    assert len(data.labs) == 600 and len(data.learners) == 200
    assert big == small <= 8  # statements (a BEGIN goes to the driver, unseen here)
    db.dispose()


def test_the_submit_time_is_read_from_the_store(db_url: str) -> None:
    """cohort_labs takes a lab's submit time from what the orchestrator kept in its details
    (the submit's acceptance), else from its move to grading; none while it runs."""
    upgrade(db_url)
    db = Database(db_url)
    c = cohorts.create_cohort(db, ANN, "Times").cohort_id
    cohorts.enrol_subjects(db, ANN, c, ["lea", "leo", "lia"])
    a = assignments.create_assignment(
        db, ANN, c, template_id=LAB, opens_at=T0, closes_at=T0 + timedelta(hours=4),
        attempts_allowed=1, hints_allowed=True, known_templates={LAB}).assignment_id
    ran = timedelta(minutes=30)
    for sid, who, end in (("scn-a1", "lea", "completed"), ("scn-a2", "leo", "completed"),
                          ("scn-a3", "lia", "running")):
        lab_row(db, sid, a, who, 1, start=T0, ran=ran, end=end)
    kept = T0 + timedelta(minutes=5)  # before its move to grading (T0 + 10 s + ran)
    with db.session() as sess:
        row = sess.get(Scenario, "scn-a1")
        assert row is not None
        row.details = {"submitted_at": kept.isoformat()}
    got = {lab.subject: lab.submitted_at for lab in dashboard.cohort_labs(db, ANN, c).labs}
    assert got == {"lea": kept, "leo": T0 + timedelta(seconds=10) + ran, "lia": None}
    # The learner's timeline: the "submitted" event (the move to grading) carries the kept
    # submit time when there is one.
    for who, want in (("lea", iso(kept)), ("leo", None)):
        events = learner_timeline(db, ANN, c, who)["labs"][0]["events"]
        submitted = next(e for e in events if e["kind"] == "submitted")
        assert submitted.get("submitted_at") == want, submitted
    db.dispose()


def test_graded_time_reads_like_every_other_time() -> None:
    """A summary's completed_at written with an offset and microseconds is shown as the
    dashboard's other times are (UTC, seconds, Z); one that is not a time shows none."""
    a = Assignment(assignment_id="asg-1", cohort_id="coh-1", tenant_id="acme", template_id=LAB,
                   opens_at=T0, closes_at=T0 + timedelta(hours=1), attempts_allowed=1,
                   hints_allowed=True)
    labs = [dashboard.Lab(sid, "asg-1", who, 1, "completed", T0)
            for sid, who in (("scn-1", "lea"), ("scn-2", "leo"))]
    data = dashboard.CohortLabs("coh-1", "Net", ["lea", "leo"], [a], labs)
    summary = {"tenant_id": "acme", "score": 1.0, "passed": 2, "total": 2, "failed": []}
    scores = {"scn-1": {**summary, "subject": "lea",
                        "completed_at": "2026-12-01T10:00:00.123456+01:00"},
              "scn-2": {**summary, "subject": "leo", "completed_at": "soon"}}
    rows = dashboard.figures(data, scores, "acme", lambda _t, _c: "")["assignments"][0]["rows"]
    assert [r["finished_at"] for r in rows] == ["2026-12-01T09:00:00Z", None]


def test_a_result_graded_after_the_due_time_is_marked_late() -> None:
    """Closing stops new starts only: a lab started before the due time can still be
    submitted, and its result shows as late (row, the assignment's count, the CSV)."""
    a = Assignment(assignment_id="asg-1", cohort_id="coh-1", tenant_id="acme", template_id=LAB,
                   opens_at=T0, closes_at=T0 + timedelta(hours=1), attempts_allowed=2,
                   hints_allowed=True)
    labs = [dashboard.Lab(sid, "asg-1", who, 1, "completed", T0)
            for sid, who in (("scn-1", "lea"), ("scn-2", "leo"), ("scn-3", "lou"))]
    data = dashboard.CohortLabs("coh-1", "Net", ["lea", "leo", "lou", "max"], [a], labs)
    summary = {"tenant_id": "acme", "score": 1.0, "passed": 2, "total": 2, "failed": []}
    scores = {"scn-1": {**summary, "subject": "lea",  # 30 min before the due time
                        "completed_at": (T0 + timedelta(minutes=30)).isoformat()},
              "scn-2": {**summary, "subject": "leo",  # one second after it, in +01:00
                        "completed_at": (T0 + timedelta(hours=1, seconds=1)).astimezone(
                            timezone(timedelta(hours=1))).isoformat()}}
    got = dashboard.figures(data, scores, "acme", lambda _t, _c: "")["assignments"][0]
    assert {r["subject"]: r["late"] for r in got["rows"]} == {
        "lea": False, "leo": True, "lou": None, "max": None}  # lou: started, nothing graded
    assert got["finished"] == 2 and got["finished_late"] == 1
    lines = dashboard_csv(dashboard.figures(data, scores, "acme", lambda _t, _c: "")
                          ).splitlines()
    assert lines[0].endswith(",finished_at,late,due_at")
    assert [line.split(",")[-2:] for line in lines[1:]] == [
        [late, iso(T0 + timedelta(hours=1))] for late in ("no", "yes", "", "")]


def test_late_is_judged_by_when_the_lab_was_submitted_not_when_it_was_graded() -> None:
    """A class submits at the due time and grading works through the submits a few at a
    time: lea submitted a minute before the due time and was graded ten minutes after it
    (on time); leo submitted a second after it (late, though graded first); lou's lab ran
    out of time and was graded then (no submit: his move to grading counts, kept in
    `submitted_at`). The CSV has the submit time beside the graded time."""
    a = Assignment(assignment_id="asg-1", cohort_id="coh-1", tenant_id="acme", template_id=LAB,
                   opens_at=T0, closes_at=T0 + timedelta(hours=1), attempts_allowed=2,
                   hints_allowed=True)
    due = T0 + timedelta(hours=1)
    labs = [dashboard.Lab("scn-1", "asg-1", "lea", 1, "completed", T0,
                          submitted_at=due - timedelta(minutes=1)),
            dashboard.Lab("scn-2", "asg-1", "leo", 1, "completed", T0,
                          submitted_at=due + timedelta(seconds=1)),
            dashboard.Lab("scn-3", "asg-1", "lou", 1, "completed", T0)]
    data = dashboard.CohortLabs("coh-1", "Net", ["lea", "leo", "lou"], [a], labs)
    summary = {"tenant_id": "acme", "score": 1.0, "passed": 2, "total": 2, "failed": []}
    scores = {"scn-1": {**summary, "subject": "lea",
                        "completed_at": (due + timedelta(minutes=10)).isoformat()},
              "scn-2": {**summary, "subject": "leo",
                        "completed_at": (due + timedelta(seconds=5)).isoformat()},
              "scn-3": {**summary, "subject": "lou",
                        "completed_at": (due - timedelta(minutes=5)).isoformat()}}
    got = dashboard.figures(data, scores, "acme", lambda _t, _c: "")["assignments"][0]
    rows = {r["subject"]: (r["late"], r["submitted_at"]) for r in got["rows"]}
    assert rows == {"lea": (False, iso(due - timedelta(minutes=1))),
                    "leo": (True, iso(due + timedelta(seconds=1))),
                    "lou": (False, None)}  # no submit time known: judged by its grading
    assert got["finished_late"] == 1
    lines = dashboard_csv(dashboard.figures(data, scores, "acme", lambda _t, _c: "")
                          ).splitlines()
    assert lines[0].endswith(",started_at,submitted_at,finished_at,late,due_at")
    assert lines[1].split(",")[-4:] == [iso(due - timedelta(minutes=1)),
                                        iso(due + timedelta(minutes=10)), "no", iso(due)]


def test_late_is_judged_against_a_learners_own_due_time() -> None:
    """An instructor gave leo until two hours after the class's due time: his result
    graded after the class's due time but before his own is on time, lea's (no extension)
    at the same moment is late; each row says which due time applied."""
    a = Assignment(assignment_id="asg-1", cohort_id="coh-1", tenant_id="acme", template_id=LAB,
                   opens_at=T0, closes_at=T0 + timedelta(hours=1), attempts_allowed=2,
                   hints_allowed=True)
    labs = [dashboard.Lab(sid, "asg-1", who, 1, "completed", T0)
            for sid, who in (("scn-1", "lea"), ("scn-2", "leo"))]
    own = T0 + timedelta(hours=3)
    data = dashboard.CohortLabs("coh-1", "Net", ["lea", "leo", "max"], [a], labs,
                                {("asg-1", "leo"): own, ("asg-1", "max"): own})
    graded = (T0 + timedelta(hours=2)).isoformat()
    scores = {sid: {"tenant_id": "acme", "subject": who, "score": 1.0, "passed": 2,
                    "total": 2, "failed": [], "completed_at": graded}
              for sid, who in (("scn-1", "lea"), ("scn-2", "leo"))}
    got = dashboard.figures(data, scores, "acme", lambda _t, _c: "")["assignments"][0]
    rows = {r["subject"]: (r["late"], r["due_at"], r["due_extended"]) for r in got["rows"]}
    assert rows == {"lea": (True, iso(T0 + timedelta(hours=1)), False),
                    "leo": (False, iso(own), True), "max": (None, iso(own), True)}
    assert got["finished_late"] == 1


@pytest.mark.parametrize(("name", "file"), [
    ("Réseaux 101 — groupe B", "reseaux-101-groupe-b-coh-1.csv"),
    ('a"b\r\nContent-Type: x/../', "a-b-content-type-x-coh-1.csv"),
    ("网络", "coh-1.csv"),  # no ASCII letter: the id alone
    ("x" * 200, "x" * 60 + "-coh-1.csv"),
])
def test_the_csv_download_is_named_after_its_class(name: str, file: str) -> None:
    assert download_name(name, "coh-1") == file
