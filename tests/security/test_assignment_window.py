"""Attack: a learner starts an assigned lab outside its window, with more attempts than
allowed (concurrent requests), with another cohort's assignment id, or reveals a hint in an
assignment that forbids hints — through the API and through the tracks page's Start button.

Before: spawn knew plans only; any learner whose plan has the track could start the lab at
any time, as often as the quotas allowed, and reveal every hint. After: the spawn gate
(`forge.spawn` with `forge.assignment`'s rules, Rego), in the one policy evaluation a spawn
makes (`forge.gates.admit`), refuses with when the assignment opens or
that it closed, or that its attempts are used (taken in one store transaction, so
concurrent requests cannot share or exceed them), nothing is reserved on a refusal; another
cohort's assignment id is 404; a hint reveal is refused. A lab assigned to none of the
learner's cohorts is still decided by the plan alone. Real spawn_service (uvicorn), real
nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from forge.classroom import attempts
from forge.classroom.assignments import iso
from forge.policy import Decision, GateDecisions, PolicyEngine
from forge.store.db import Database
from forge.store.models import Assignment, AssignmentAttempt, Scenario

from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn  # noqa: F401
from ..support.class_people import class_people
from ..support.lab_catalog import lab_catalog_dir


def _count(db: Database, model: type) -> int:
    with db.read() as sess:
        return int(sess.scalar(select(func.count()).select_from(model)) or 0)


def _move_window(db: Database, assignment_id: str, opens: datetime, closes: datetime) -> None:
    """What the passing of time does to an assignment (the instructor's times stay)."""
    with db.session() as sess:
        row = sess.get(Assignment, assignment_id)
        assert row is not None
        row.opens_at, row.closes_at = opens, closes


class _Counting:
    """The service's real policy engine, counting the evaluations it is asked for."""

    def __init__(self, inner: PolicyEngine) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def policy_hash(self) -> str:
        return self.inner.policy_hash

    def decide(self, package: str, input: dict[str, Any]) -> Decision:
        self.calls.append(package)
        return self.inner.decide(package, input)

    def decide_gates(self, entry: str, input: dict[str, Any]) -> GateDecisions:
        self.calls.append(f"forge.gates.{entry}")
        return self.inner.decide_gates(entry, input)

    def probe(self) -> None:
        self.inner.probe()


def _page_as(env: SpawnEnv, key: dict[str, str], path: str) -> str:
    """The web page at `path` as the learner of `key` sees it, whitespace runs made one."""
    with env.client() as c:
        signin = c.post("/signin", data={"api_key": key["x-api-key"]},
                        headers={"origin": env.url})
        assert signin.status_code == 303, signin.text
        shown = c.get(path)
        assert shown.status_code == 200, shown.text
        return re.sub(r"\s+", " ", shown.text)


def _setup(env: SpawnEnv) -> tuple[dict[str, str], dict[str, str], dict[str, str], str, str]:
    keys = class_people(env.state.ctx.db, ("ann", "bob"), ("lea", "leo"))
    now = datetime.now(UTC).replace(second=30)  # a window off the whole minute
    with env.client() as c:
        ids = []
        for who, learner in (("ann", "lea"), ("bob", "leo")):
            cohort = c.post("/v1/cohorts", json={"name": f"{who}'s class"}, headers=keys[who])
            assert cohort.status_code == 201, cohort.text
            cid = cohort.json()["cohort_id"]
            enrol = c.post(f"/v1/cohorts/{cid}/enrolments", content=f"subject\n{learner}\n",
                           headers={**keys[who], "content-type": "text/csv"})
            assert enrol.json() == {"cohort_id": cid, "enrolled": 1, "already_enrolled": 0,
                                   "not_enrolled": []}, enrol.text
            made = c.post(f"/v1/cohorts/{cid}/assignments", headers=keys[who], json={
                "template_id": "netplus" if who == "ann" else "basic-netplus",
                "opens_at": iso(now + timedelta(hours=1)),
                "closes_at": iso(now + timedelta(hours=2)),
                "attempts_allowed": 1, "hints_allowed": False})
            assert made.status_code == 201, made.text
            ids.append(made.json()["assignment_id"])
    return keys["lea"], keys["leo"], keys["ann"], ids[0], ids[1]


def test_assignment_window_attempts_and_hints_are_enforced(make_spawn: MakeSpawn,  # noqa: F811
                                                           tmp_path: Path) -> None:
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    lea, leo, _ann, a1, _b1 = _setup(env)
    assert env.state.policy is not None
    counting = _Counting(env.state.policy)
    env.state.policy = counting
    with db.read() as sess:
        row = sess.get(Assignment, a1)
        assert row is not None
        opens = iso(row.opens_at)

    with env.client() as c:
        # Before opens_at: refused by the policy, saying when it opens; nothing reserved.
        early = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
        assert early.status_code == 403, early.text
        assert early.json()["error"] == "assignment_refused"
        assert early.json()["message"] == f"lab: assignment {a1} opens at {opens}"
        # Refused by the spawn gate itself, in the spawn's one policy evaluation.
        assert counting.calls == ["forge.gates.admit"]
        assert _count(db, Scenario) == 0 and _count(db, AssignmentAttempt) == 0

        # The tracks page's Start button goes through the same gate.
        signin = c.post("/signin", data={"api_key": lea["x-api-key"]},
                        headers={"origin": env.url})
        assert signin.status_code == 303, signin.text
        tracks = c.get("/tracks").text
        # The time is a <time> the browser shows in its own zone; its text is UTC.
        assert "Your assignments" in tracks and f"opens {opens}" in re.sub(r"<[^>]+>", "",
                                                                           tracks)
        csrf = re.search(r'name="csrf" value="([^"]+)"', tracks)
        assert csrf is not None
        web = c.post("/spawn", headers={"origin": env.url},
                     data={"csrf": csrf.group(1), "track": "netplus", "lab": "netplus",
                           "request_id": "web-early-start-1"})
        # ...and says it in words: no "lab:" field name or assignment id on a page
        # (its time a <time> too, which the browser shows in its own zone; its text is UTC,
        # with the seconds of a time off the whole minute, which "09:00" dropped)
        opens_words = f"{opens[:10]} {opens[11:19]} UTC"
        assert web.status_code == 403 and ("This lab is assigned to your class, so it starts "
                                           f"only as the assignment allows: it opens on "
                                           f"{opens_words}.") in re.sub(r"<[^>]+>", "",
                                                                        web.text)
        assert (f'<time class="utc" datetime="{opens}">{opens_words}</time>'
                in web.text)
        assert a1 not in web.text and "lab: " not in web.text
        assert _count(db, Scenario) == 0
        c.cookies.clear()

        # After closes_at: refused, saying it closed.
        now = datetime.now(UTC)
        _move_window(db, a1, now - timedelta(hours=2), now - timedelta(hours=1))
        late = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
        assert late.status_code == 403 and " closed at " in late.json()["message"], late.text

        # Another cohort's learner naming this assignment: not theirs, 404.
        _move_window(db, a1, now - timedelta(minutes=1), now + timedelta(hours=1))
        stolen = c.post("/v1/spawn", json={"track": "netplus", "assignment_id": a1},
                        headers=leo)
        assert stolen.status_code == 404 and stolen.json()["error"] == "assignment_not_found"
        # A lab assigned to none of leo's cohorts: the plan alone decides, as before.
        free = c.post("/v1/spawn", json={"track": "netplus"}, headers=leo)
        assert free.status_code == 201, free.text

    # Inside the window, one attempt allowed, four concurrent requests: exactly one starts.
    def one(i: int) -> httpx.Response:
        with env.client() as client:
            return client.post("/v1/spawn", headers=lea,
                               json={"track": "netplus", "request_id": f"req-race-{i:04d}"})

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    codes = sorted(r.status_code for r in results)
    assert codes[0] == 201 and codes.count(201) == 1, [r.text for r in results]
    started = next(r for r in results if r.status_code == 201).json()["scenario_id"]
    # A loser that came while the winner's start was under way is told to try again (it
    # could still fail and give the attempt back); one that came after, that all are used.
    for r in results:
        if r.status_code == 403:
            assert r.json()["message"] == f"lab: all 1 attempts of assignment {a1} are used"
        elif r.status_code == 409:
            assert r.json()["error"] == "assignment_busy" and r.headers["retry-after"] == "2"
        else:
            assert r.status_code == 201, r.text
    with env.client() as c:  # the race over, the winner's lab bound: all attempts are used
        after = c.post("/v1/spawn", headers=lea, json={"track": "netplus"})
        assert after.status_code == 403, after.text
        assert after.json()["message"] == f"lab: all 1 attempts of assignment {a1} are used"
    with db.read() as sess:
        attempts = list(sess.scalars(select(AssignmentAttempt)))
        assert [(a.assignment_id, a.subject, a.scenario_id) for a in attempts] == [
            (a1, "lea", started)]

    with env.client() as c:
        # The winner's retry still answers with its lab (idempotent), its attempt unchanged.
        winner = next(i for i, r in enumerate(results) if r.status_code == 201)
        again = c.post("/v1/spawn", headers=lea,
                       json={"track": "netplus", "request_id": f"req-race-{winner:04d}"})
        assert again.status_code == 200 and again.json()["scenario_id"] == started, again.text
        mine = c.get("/v1/assignments", headers=lea).json()["assignments"]
        assert [(a["assignment_id"], a["attempts_used"], a["attempts_allowed"]) for a in mine
                ] == [(a1, 1, 1)]
        # The assignment forbids hints: the reveal is refused by the policy.
        hint = c.post(f"/v1/scenarios/{started}/hints/h1", headers=lea)
        assert hint.status_code == 403, hint.text
        assert hint.json()["error"] == "hints_not_allowed"


def test_an_assignment_closed_long_ago_no_longer_holds_its_lab_back(
        make_spawn: MakeSpawn, tmp_path: Path) -> None:  # noqa: F811
    """Review CD: a closed assignment refused its lab for ever, also once it had left the
    learner's list (30 days after its due time), so a learner with a plan of their own
    could never practise a past course's labs, and an instructor could lock one out with a
    window already closed. Within those 30 days it still refuses, as documented; after,
    the plan decides and the lab counts for no class. Named, it still says it closed."""
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    lea, _leo, _ann, a1, _b1 = _setup(env)
    now = datetime.now(UTC)
    with env.client() as c:
        _move_window(db, a1, now - timedelta(days=40), now - timedelta(days=29))
        recent = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
        assert recent.status_code == 403 and " closed at " in recent.json()["message"]
        _move_window(db, a1, now - timedelta(days=40), now - timedelta(days=31))
        assert c.get("/v1/assignments", headers=lea).json()["assignments"] == []
        named = c.post("/v1/spawn", json={"track": "netplus", "assignment_id": a1},
                       headers=lea)
        assert named.status_code == 403 and " closed at " in named.json()["message"]
        practice = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
        assert practice.status_code == 201, practice.text
    assert _count(db, AssignmentAttempt) == 0  # counted for no class


def test_a_start_under_way_is_not_reported_as_all_attempts_used(
        make_spawn: MakeSpawn, tmp_path: Path) -> None:  # noqa: F811
    """Several Start clicks at once: the first took the last attempt and is still starting
    its lab (its attempt is bound to no lab yet). Before, the others were told "all
    attempts are used", untrue a second later if that start failed and gave the attempt
    back. Now: 409 `assignment_busy` with Retry-After. An attempt stranded longer than a
    start takes, or a closed window, are refused as before; nothing is taken."""
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    lea, _leo, _ann, a1, _b1 = _setup(env)
    now = datetime.now(UTC)
    _move_window(db, a1, now - timedelta(minutes=5), now + timedelta(hours=1))

    def in_flight(at: datetime) -> None:
        with db.session() as sess:
            sess.query(AssignmentAttempt).delete()
            sess.add(AssignmentAttempt(assignment_id=a1, subject="lea", attempt=1,
                                       request_id="req-other-click", scenario_id=None, at=at))

    with env.client() as c:
        in_flight(datetime.now(UTC))
        busy = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
        assert busy.status_code == 409, busy.text
        assert busy.json()["error"] == "assignment_busy" and busy.headers["retry-after"] == "2"
        assert _count(db, Scenario) == 0 and _count(db, AssignmentAttempt) == 1
        # Taken two minutes ago and still bound to nothing: a crashed start, which
        # housekeeping gives back; until then the attempt counts.
        in_flight(datetime.now(UTC) - timedelta(minutes=2))
        used = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
        assert used.status_code == 403, used.text
        assert used.json()["message"] == f"lab: all 1 attempts of assignment {a1} are used"
        # Closed: that is the answer, whatever is under way.
        in_flight(datetime.now(UTC))
        _move_window(db, a1, now - timedelta(hours=2), now - timedelta(hours=1))
        closed = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
        assert closed.status_code == 403 and " closed at " in closed.json()["message"]
        assert _count(db, Scenario) == 0 and _count(db, AssignmentAttempt) == 1


def test_the_loser_of_the_take_race_is_told_to_try_again(
        make_spawn: MakeSpawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Two clicks at once both read "0 used" and are admitted; the other click takes the
    last attempt between this one's reading and its take. Judged again, this one is
    refused only by that start still under way: 409 `assignment_busy`, not "all used"."""
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    lea, _leo, _ann, a1, _b1 = _setup(env)
    now = datetime.now(UTC)
    _move_window(db, a1, now - timedelta(minutes=5), now + timedelta(hours=1))
    real = attempts.take_attempt

    def racing(db_: Database, aid: str, subject: str, rid: str,
               allowed: int) -> tuple[int, bool] | None:
        with db.session() as sess:  # the other click's attempt, bound to no lab yet
            sess.add(AssignmentAttempt(assignment_id=aid, subject=subject, attempt=1,
                                       request_id="req-other-click", scenario_id=None,
                                       at=datetime.now(UTC)))
        return real(db_, aid, subject, rid, allowed)

    monkeypatch.setattr(attempts, "take_attempt", racing)
    with env.client() as c:
        lost = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
    assert lost.status_code == 409, lost.text
    assert lost.json()["error"] == "assignment_busy" and lost.headers["retry-after"] == "2"
    assert _count(db, Scenario) == 0 and _count(db, AssignmentAttempt) == 1


def test_a_lab_whose_assignment_forbids_hints_offers_no_reveal_button(
        make_spawn: MakeSpawn, tmp_path: Path) -> None:  # noqa: F811
    """The lab page of a lab started for an assignment without hints offered every "Reveal
    hint" button; each press answered "hint: hints are not allowed in assignment asg-…".
    It now says hints are off and offers none (the reveal route still refuses)."""
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    lea, leo, _ann, a1, _b1 = _setup(env)
    now = datetime.now(UTC)
    _move_window(db, a1, now - timedelta(minutes=1), now + timedelta(hours=1))
    with env.client() as c:
        assigned = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
        assert assigned.status_code == 201, assigned.text
        own = c.post("/v1/spawn", json={"track": "netplus"}, headers=leo)  # no assignment
        assert own.status_code == 201, own.text
    with db.session() as sess:  # both labs up (no lab node here to start them)
        for started in (assigned, own):
            row = sess.get(Scenario, started.json()["scenario_id"])
            assert row is not None
            row.state = "running"

    page = _page_as(env, lea, f"/lab/{assigned.json()['scenario_id']}")
    assert "Reveal hint" not in page and 'class="hint-reveal"' not in page
    assert ("Hints are off for this lab: you started it for your class's assignment, which "
            "allows none.") in page
    other = _page_as(env, leo, f"/lab/{own.json()['scenario_id']}")  # outside any assignment: as before
    assert "Reveal hint 1" in other and 'id="hints-off"' not in other
    with env.client() as c:  # and the route refuses a reveal all the same
        hint = c.post(f"/v1/scenarios/{assigned.json()['scenario_id']}/hints/h1", headers=lea)
        assert (hint.status_code, hint.json()["error"]) == (403, "hints_not_allowed")


def test_an_assignment_with_every_attempt_used_offers_no_start_button(
        make_spawn: MakeSpawn, tmp_path: Path) -> None:  # noqa: F811
    """"1 of 1 attempt used" stood beside a "Start this lab for …" button whose press only
    answered "lab: all 1 attempts of assignment asg-… are used". The page says all attempts
    are used instead, and offers the button while one is left."""
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    lea, _leo, _ann, a1, _b1 = _setup(env)
    now = datetime.now(UTC)
    _move_window(db, a1, now - timedelta(minutes=1), now + timedelta(hours=1))

    before = _page_as(env, lea, "/tracks")
    assert "0 of 1 attempt used" in before and ">Start this lab for ann&#39;s class<" in before
    assert "All attempts used" not in before
    with env.client() as c:
        started = c.post("/v1/spawn", json={"track": "netplus"}, headers=lea)
        assert started.status_code == 201, started.text
    after = _page_as(env, lea, "/tracks")
    assert "1 of 1 attempt used" in after
    assert "Start this lab for ann&#39;s class" not in after
    assert "All attempts used: this assignment starts no more labs." in after
    # The catalog's own Start of that lab is refused as well, and says why in words.
    with env.client() as c:
        assert c.post("/signin", data={"api_key": lea["x-api-key"]},
                      headers={"origin": env.url}).status_code == 303
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/tracks").text)
        assert csrf is not None
        again = c.post("/spawn", headers={"origin": env.url},
                       data={"csrf": csrf.group(1), "track": "netplus", "lab": "netplus",
                             "request_id": "web-after-all-used-1"})
    assert again.status_code == 403
    assert ("This lab is assigned to your class, so it starts only as the assignment allows: "
            "you have used all 1 attempt it allows.") in again.text
    assert a1 not in again.text


def test_an_assignment_not_open_yet_or_closed_offers_no_start_button(
        make_spawn: MakeSpawn, tmp_path: Path) -> None:  # noqa: F811
    """Before its opening time (and after its due time) an assignment offered "Start this lab
    for …", whose press only answered "lab: assignment asg-… opens at 2026-…Z" (UTC, to a
    learner shown the time in their own zone). The page says it is not open yet, or closed,
    and offers the button only while the spawn gate would let it start."""
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    lea, _leo, _ann, a1, _b1 = _setup(env)  # opens in an hour

    button = ">Start this lab for ann&#39;s class<"
    upcoming = _page_as(env, lea, "/tracks")
    assert button not in upcoming
    assert "Not open yet: you can start it here from its opening time." in upcoming
    now = datetime.now(UTC)
    _move_window(db, a1, now - timedelta(hours=2), now - timedelta(hours=1))
    closed = _page_as(env, lea, "/tracks")
    assert button not in closed and "Closed: this assignment starts no more labs." in closed
    _move_window(db, a1, now - timedelta(minutes=1), now + timedelta(hours=1))
    opened = _page_as(env, lea, "/tracks")
    assert button in opened and "Not open yet" not in opened and "Closed:" not in opened
