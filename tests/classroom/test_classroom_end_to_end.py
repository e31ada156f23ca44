"""The classroom from end to end (issue 18, "what done looks like"), over HTTP as browsers
would drive it, with real services: the local OpenID Provider (pyop), spawn_service,
orchestrator with the real lab runtime, scoreboard, one nats-server, SQLite.

An instructor signs in through the provider, creates a cohort and an invite link, two
learners sign in through the provider and join; the instructor assigns netplus with a real
5-minute window that opened 5 minutes minus a few seconds ago (so it closes a few seconds
from now: no clock is faked anywhere). The first learner starts the lab inside the window,
solves it with the lab's reference solution in the terminal, submits, and downloads a
credential that `forge verify-credential` accepts offline. The instructor's dashboard shows
both (one finished with her score, one not started); the second learner, once the window
closed, is refused with when it closed, and the dashboard still counts no start for him.
Last, the LTI platform emulator launches a third learner into a second assignment of the
class; once her verdict is signed the emulator receives the grade post.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from forge.bus import NatsServer
from forge.classroom.assignments import iso
from forge.cli import app as forge_cli
from forge.config import load_settings
from forge.content import content_path
from forge.entitlements.grants import grant
from forge.runtime.local import LocalRuntime
from forge.services.orchestrator.app import build_app as build_orchestrator
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.services.spawn.app import build_app as build_spawn
from forge.stack.journey import Journey
from forge.store.db import Database

from ..live_server import live_server, reserve_port
from ..services.conftest import prod_environ, with_signing_key
from ..support.lti_platform import LtiPlatformEmulator, launch_learner, lti_platform, write_lti_file
from ..support.oidc_provider import LocalProvider, local_provider
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.usefixtures("sqlite_only_store")

CLIENT_ID, CLIENT_SECRET = "forge-acme", "classroom-e2e-client-secret-0123456789"
USERS = {"ada": {"sub": "ada", "groups": ["teachers"]},
         "lea": {"sub": "lea", "groups": ["students"]},
         "leo": {"sub": "leo", "groups": ["students"]},
         "oto": {"sub": "oto", "groups": ["operators"]}}
WINDOW = timedelta(minutes=5)
# The window closes this long after the assignment is made: time for lea's start (two
# requests), while the lab, her credential and the dashboard take about as long, so little
# of it is spent waiting.
MARGIN = timedelta(seconds=15)  # three requests, on a loaded machine


@dataclass
class Classroom:
    """The running platform and the provider its tenant `acme` signs in with."""

    site: str
    board: str
    storage: Path
    op: LocalProvider
    db: Database
    lms: LtiPlatformEmulator


@pytest.fixture
def classroom(tmp_path: Path, nats: NatsServer) -> Iterator[Classroom]:
    sock = reserve_port()  # held until served: the settings name it
    port = sock.getsockname()[1]
    site = f"http://127.0.0.1:{port}"
    callback = f"{site}/signin/oidc/acme/callback"
    with local_provider([callback], CLIENT_ID, CLIENT_SECRET, USERS) as op, \
            lti_platform() as lms:
        lms.forge_jwks_url = f"{site}/lti/jwks"
        lti_file = write_lti_file(tmp_path, site, {lms.name: lms.registration("acme", site)})
        (tmp_path / "secret").write_text(CLIENT_SECRET)
        (tmp_path / "oidc.yaml").write_text(yaml.safe_dump({"tenants": {"acme": {
            "display_name": "Acme Login", "issuer": op.issuer, "client_id": CLIENT_ID,
            "client_secret_file": str(tmp_path / "secret"), "redirect_uri": callback,
            "role_claim": "groups",
            "roles": {"instructor": ["teachers"], "operator": ["operators"]}}}}))
        storage = with_signing_key(tmp_path / "storage")
        base = {**nats.client_env(), "FORGE_DB_URL": f"sqlite:///{tmp_path / 'forge.db'}",
                "FORGE_TEMPLATE_DIR": str(content_path("templates")),
                "FORGE_OIDC_FILE": str(tmp_path / "oidc.yaml"),
                "FORGE_LTI_FILE": str(lti_file)}
        runtime = LocalRuntime(str(tmp_path / "runtime"), runtime_prefix("c"))
        try:
            settings = load_settings(prod_environ(storage, **base))
            orchestrator = build_orchestrator(settings, runtime=runtime,
                                              reaper_interval_s=3600)
            with live_server(orchestrator) as orch_url, \
                    live_server(build_scoreboard(settings, lti_poll_s=0.2)) as board_url:
                spawn = build_spawn(load_settings(prod_environ(
                    storage, ORCHESTRATOR_URL=orch_url, SCOREBOARD_URL=board_url, **base)))
                with live_server(spawn, sock=sock):
                    yield Classroom(site, board_url, storage, op, spawn.state.spawn.ctx.db,
                                    lms)
        finally:
            for info in runtime.list():
                runtime.destroy(info.lab_id)
            runtime.close()


def sign_in(room: Classroom, user: str) -> httpx.Client:
    """A browser of `user`, signed in through the provider (authorization code + PKCE)."""
    web = httpx.Client(base_url=room.site, timeout=30)
    start = web.get("/signin/oidc/acme/start?next=/tracks",
                    headers={"sec-fetch-site": "same-origin"})
    assert start.status_code == 303, start.text
    authorize = str(start.headers["location"])
    assert authorize.startswith(f"{room.op.issuer}/authorize?")
    with httpx.Client(timeout=30) as idp:
        assert idp.get(authorize).status_code == 200  # the provider's login form
        back = idp.post(f"{room.op.issuer}/login",
                        data={"request": authorize.split("?", 1)[1], "user": user})
    assert back.status_code == 303
    done = web.get(str(back.headers["location"]))
    assert done.status_code == 200 and "forge_session" in web.cookies, done.text
    return web


def post(web: httpx.Client, room: Classroom, path: str, body: dict[str, Any]
         ) -> httpx.Response:
    """An API call with the session cookie: same-origin, as the pages make it."""
    return web.post(path, json=body, headers={"origin": room.site})


def test_a_class_from_sign_in_to_credential_and_dashboard(classroom: Classroom,
                                                          tmp_path: Path) -> None:
    room = classroom
    ada = sign_in(room, "ada")  # an instructor: the provider's group "teachers"
    cohort = post(ada, room, "/v1/cohorts", {"name": "Networking 101"})
    assert cohort.status_code == 201, cohort.text
    cid = cohort.json()["cohort_id"]
    invite = post(ada, room, f"/v1/cohorts/{cid}/invites", {"days": 1}).json()["invite"]

    learners = {}
    for who in ("lea", "leo"):
        grant(room.db, "acme", "PRO", who)
        web = learners[who] = sign_in(room, who)
        joined = post(web, room, "/v1/cohorts/join", {"invite": invite})
        assert joined.json() == {"cohort_id": cid, "name": "Networking 101"}, joined.text

    # A real 5-minute window, which opened 5 minutes minus MARGIN ago.
    closes = datetime.now(UTC).replace(microsecond=0) + MARGIN
    made = post(ada, room, f"/v1/cohorts/{cid}/assignments", {
        "template_id": "netplus", "opens_at": iso(closes - WINDOW), "closes_at": iso(closes),
        "attempts_allowed": 1, "hints_allowed": False})
    assert made.status_code == 201, made.text
    aid = made.json()["assignment_id"]
    lea = learners["lea"]
    mine = lea.get("/v1/assignments").json()["assignments"]
    assert [(a["assignment_id"], a["closes_at"]) for a in mine] == [(aid, iso(closes))]

    # lea starts inside the window, solves the lab in its terminal and submits.
    spawned = post(lea, room, "/v1/spawn", {"track": "netplus", "assignment_id": aid})
    assert spawned.status_code == 201, spawned.text
    sid = spawned.json()["scenario_id"]
    journey = Journey(room.site, room.board, room.storage)
    journey.result.scenario_id = sid
    state: dict[str, Any] = {}
    journey._wait_running(lea, state)
    journey._solve(lea, state)
    journey._submit(lea, state)
    deadline = time.monotonic() + 180
    while not lea.get(f"/lab/{sid}/status").json()["score_ready"]:
        assert time.monotonic() < deadline, "no verdict"
        time.sleep(0.25)

    # Her credential verifies offline against the platform's key and her verdict.
    credential = lea.get(f"/lab/{sid}/credential")
    assert credential.status_code == 200, credential.text
    files = {"credential.vc": credential.content,
             "KEYS.pem": lea.get(f"/lab/{sid}/artifacts/verdict.pub").content,
             "verdict.sig": lea.get(f"/lab/{sid}/artifacts/verdict.sig").content}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    checked = CliRunner().invoke(forge_cli, [
        "verify-credential", str(tmp_path / "credential.vc"),
        "--trusted-key", str(tmp_path / "KEYS.pem"), "--verdict", str(tmp_path / "verdict.sig")])
    assert checked.exit_code == 0, checked.output

    # The instructor's dashboard shows both: lea finished with her score, leo not started.
    board = ada.get(f"/v1/cohorts/{cid}/dashboard")
    assert board.status_code == 200, board.text
    (shown,) = board.json()["assignments"]
    rows = {r["subject"]: r for r in shown["rows"]}
    assert (rows["lea"]["status"], rows["lea"]["score"], rows["lea"]["graded_lab"]) == (
        "finished", 1.0, sid)
    assert rows["lea"]["time_spent_s"] > 0 and rows["lea"]["failed_criteria"] == []
    assert (rows["leo"]["status"], rows["leo"]["attempts_used"]) == ("not started", 0)
    assert (shown["started"], shown["finished"]) == (1, 1)
    page = ada.get(f"/teach/cohorts/{cid}")
    assert page.status_code == 200 and 'data-subject="leo"' in page.text
    # "1 of 2", and "(1 after the due time)" when a slow machine graded her after the
    # window's close (15 s after it was made): her result is late then, and still shown.
    late_note = ' <span class="muted">(1 after the due time)</span>' if rows["lea"]["late"] else ""
    assert f'<dd class="fig-finished">1 of 2{late_note}</dd>' in page.text
    timeline = ada.get(f"/v1/cohorts/{cid}/learners/lea/timeline").json()
    assert "submitted" in [e["kind"] for e in timeline["labs"][0]["events"]]
    (recording, *_) = timeline["labs"][0]["recordings"]  # her terminal session, replayable
    cast = ada.get(recording["url"])
    assert cast.status_code == 200 and json.loads(cast.text.splitlines()[0])["version"] == 2
    shown_to_ada = ada.get(f"/teach/cohorts/{cid}/learners/lea")  # the page plays it
    played = f'data-cast="/teach/labs/{sid}/recordings/{recording["name"]}"'
    assert shown_to_ada.status_code == 200 and played in shown_to_ada.text
    assert "wasm-unsafe-eval" in shown_to_ada.headers["content-security-policy"]
    assert ada.get(f"/teach/labs/{sid}/recordings/{recording['name']}").content == cast.content

    # leo, once the window has closed (waiting for the real clock if the lab was quick),
    # is refused with when it closed; nothing started.
    while datetime.now(UTC) < closes + timedelta(seconds=1):
        time.sleep(0.2)
    late = post(learners["leo"], room, "/v1/spawn", {"track": "netplus"})
    assert late.status_code == 403, late.text
    assert late.json()["error"] == "assignment_refused"
    assert f"assignment {aid} closed at {iso(closes)}" in late.json()["message"]
    again = ada.get(f"/v1/cohorts/{cid}/dashboard").json()["assignments"][0]
    assert [r["status"] for r in again["rows"]] == ["finished", "not started"]

    _lti_third_learner(room, cid)


def _lti_third_learner(room: Classroom, cohort_id: str) -> None:
    """The LTI emulator (named as such: no LMS runs here) launches a third learner into an
    assignment of the cohort, who starts the lab and submits; the emulator receives the
    grade post once the verdict is signed. The first assignment's window has closed by now
    (that was leo's refusal), so the instructor adds one open for the LMS's learners once
    an operator of the tenant linked the course to the cohort."""
    ada = sign_in(room, "ada")
    oto = sign_in(room, "oto")  # an operator: the provider's group "operators"
    linked = post(oto, room, f"/v1/cohorts/{cohort_id}/lti-course",
                  {"platform": room.lms.name, "context_id": room.lms.course_id})
    assert linked.status_code in (200, 201), linked.text
    now = datetime.now(UTC).replace(microsecond=0)
    made = post(ada, room, f"/v1/cohorts/{cohort_id}/assignments", {
        "template_id": "netplus", "opens_at": iso(now - timedelta(minutes=1)),
        "closes_at": iso(now + WINDOW), "attempts_allowed": 1, "hints_allowed": False})
    assert made.status_code == 201, made.text
    aid = made.json()["assignment_id"]
    grant(room.db, "acme", "PRO", "lti.lia")
    landing = launch_learner(room.site, room.lms, aid, "lia")
    assert landing.status == 200 and landing.url == f"/lti/assignment/{aid}", landing.page
    csrf = re.search(r'name="csrf" value="([^"]+)"', landing.page)
    assert csrf is not None, landing.page
    start = landing.client.post("/spawn", headers={"origin": room.site}, data={
        "csrf": csrf.group(1), "track": "netplus", "lab": "netplus", "assignment_id": aid,
        "request_id": "e2e-lti-lia-0001"}, follow_redirects=False)
    assert start.status_code == 303, start.text
    journey = Journey(room.site, room.board, room.storage)
    journey.result.scenario_id = start.headers["location"].rsplit("/", 1)[-1]
    state: dict[str, Any] = {}
    journey._wait_running(landing.client, state)
    journey._submit(landing.client, state)  # unsolved: the grade is what the verdict says
    grade = room.lms.wait_for_grade("lia", 120)
    assert (grade["userId"], grade["scoreMaximum"], grade["gradingProgress"]) == (
        "lia", 100.0, "FullyGraded")
    assert grade["scoreGiven"] < 100.0
