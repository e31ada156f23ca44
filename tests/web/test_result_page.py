"""The graded result on the lab page and its shareable result page, on the real spawn_service
app reading a real scoreboard (uvicorn on loopback) that scored real completion events:
weight earned of weight total, a reason per failed criterion, authenticity apart from
pass/fail, a verify instruction for the holder of the four downloads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.content import content_path
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.services.scoreboard.scoring import Scorer
from forge.services.spawn.app import build_app
from forge.services.spawn.web.result import check_reason, result_view
from forge.store.finalized_audits import record_finalized_audit
from forge.store.models import Scenario
from forge.templates.registry import TemplateRegistry
from forge_verify import main as verify_main

from ..conftest import TEMPLATE_FIXTURES
from ..live_server import live_server
from ..scoreboard.conftest import Completion, build_completion, store_of
from ..services.conftest import prod_environ, with_signing_key
from .test_pages import sign_in

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


@dataclass
class Graded:
    """A spawn app signed in as alice, and her graded labs (lab-netplus: saved-page weight 2
    passed, route-present weight 1 failed with exit code 1)."""

    client: TestClient
    settings: Settings
    done: Completion
    tampered: Completion


def _owned_row(client: TestClient, done: Completion) -> None:
    now = datetime.now(UTC)
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    with db.session() as sess:  # the row build_completion recorded, now completed
        sess.merge(Scenario(scenario_id=done.scenario_id, request_id="r-" + done.scenario_id,
                          tenant_id="acme", subject="alice", track="netplus",
                          template_id="lab-netplus", template_sha256=None, plan="PRO",
                          retention_days=30, state="completed", state_reason="submitted",
                          sat_jti=None, et_jti=None, created_at=now, updated_at=now,
                          expires_at=None, details={}))


def _score(settings: Settings, scorer: Scorer) -> Completion:
    done = build_completion(settings, passed=False)
    route = done.body["results"][1]
    route["exit_code"] = 1  # `ip route show` found nothing and said so
    scorer.score(done.event)
    return done


@pytest.fixture
def graded(tmp_path: Path, nats: NatsServer) -> Iterator[Graded]:
    storage = with_signing_key(tmp_path / "storage")
    db = f"sqlite:///{tmp_path / 'forge.db'}"
    board_settings = load_settings(prod_environ(storage, **nats.client_env(), FORGE_DB_URL=db))
    scorer = Scorer(board_settings, TemplateRegistry.load(TEMPLATE_FIXTURES),
                    db=store_of(board_settings))
    done, tampered = _score(board_settings, scorer), _score(board_settings, scorer)
    # Changed after signing: a description with markup, which the signature no longer covers.
    path = storage / "scenarios" / tampered.scenario_id / "results" / "score.json"
    doc = json.loads(path.read_bytes())
    doc["criteria"][0]["description"] = '<script>alert("x")</script> rewritten'
    path.write_text(json.dumps(doc))
    with live_server(build_scoreboard(board_settings)) as board_url:
        settings = load_settings(prod_environ(
            storage, **nats.client_env(), FORGE_DB_URL=db,
            FORGE_TEMPLATE_DIR=str(content_path("templates")),
            ORCHESTRATOR_URL="http://127.0.0.1:9", SCOREBOARD_URL=board_url))
        with TestClient(build_app(settings), follow_redirects=False) as client:
            sign_in(client, settings)
            _owned_row(client, done)
            _owned_row(client, tampered)
            yield Graded(client, settings, done, tampered)


def _text(html: str) -> str:
    """The page's visible words, tags removed and whitespace folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_result_shows_weight_reasons_authenticity_and_a_working_verify_command(
        graded: Graded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, sid = graded.client, graded.done.scenario_id
    lab = client.get(f"/lab/{sid}")
    assert lab.status_code == 200
    words = _text(lab.text)
    # Passed or not in words first (every task passed is the credential's rule), then the
    # score as a percentage: 2 of 3 weight (weights 2 + 1), not "1 of 2" (criteria counted)
    assert "Not passed: 1 of 2 tasks done Score 66.7 % 2 of 3 weight earned" in words
    assert "( 0.67 in score.json)" in words
    # A way on: start a lab again (this template is not in the catalog: the lab list).
    assert '<a id="start-again" href="/tracks">' in lab.text
    # Called by its track where the catalog no longer has its title; the id stays shown.
    h1 = re.search(r"<h1>(.*?)</h1>", lab.text, re.S)
    assert h1 is not None and _text(h1.group(1)).split()[:3] == ["netplus", "lab", sid]
    route = re.search(r'<tr id="criterion-route-present">.*?</tr>', lab.text, re.S)
    assert route is not None and "failed" in route.group(0)
    assert "it ended with exit code 1" in route.group(0)
    saved = re.search(r'<tr id="criterion-saved-page">.*?</tr>', lab.text, re.S)
    assert saved is not None and "passed" in saved.group(0) and "<ul" not in saved.group(0)
    # authenticity in words, in its own neutral style, apart from pass/fail
    verification = re.search(r'<strong id="verification" class="([^"]+)">([^<]+)</strong>',
                             lab.text)
    assert verification is not None
    assert verification.group(1) == "authenticity"
    assert re.fullmatch(r"Authentic: signed by key [0-9a-f]{8,}", verification.group(2))
    # the verify command names the downloads as saved and a verifier the learner can have
    assert "forge verify score.json evidence.tar.zst verdict.sig verdict.pub" in words
    assert "forge-verify score.json evidence.tar.zst verdict.sig verdict.pub" in words
    assert "frostgate-forge-verify" in words and "scripts/verify_verdict.py" not in words
    # ... and does not oversell a PASS without the platform's key (anyone can re-sign)
    assert "proves integrity, not origin" in words
    assert "--trusted-key forge-keys.pem with this platform's public keys" in words
    # ... and it verifies the four files as downloaded from this page, run where they are
    names = re.findall(rf'href="/lab/{sid}/artifacts/([^"]+)"', lab.text)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for name in names:
        (downloads / name).write_bytes(client.get(f"/lab/{sid}/artifacts/{name}").content)
    stated = re.search(r"<code>forge-verify ([^<]+)</code>", lab.text)
    assert stated is not None and sorted(stated.group(1).split()) == sorted(names)
    monkeypatch.chdir(downloads)
    assert verify_main(stated.group(1).split(), prog="forge-verify") == 0
    # the shareable link: its own page, the same result, only for its owner
    assert f'href="/lab/{sid}/result"' in lab.text
    shared = client.get(f"/lab/{sid}/result")
    assert shared.status_code == 200
    assert "2 of 3 weight earned" in _text(shared.text) and "Graded 20" in _text(shared.text)
    assert "<title>Result: netplus" in shared.text and "Not passed: 1 of 2" in shared.text
    assert "exit code 1" in shared.text and shared.headers["content-security-policy"]
    client.cookies.clear()
    sign_in(client, graded.settings, "evil", "alice")
    assert client.get(f"/lab/{sid}/result").status_code == 404


def test_an_altered_result_reads_not_authentic_and_its_text_stays_text(graded: Graded) -> None:
    shown = graded.client.get(f"/lab/{graded.tampered.scenario_id}/result")
    assert shown.status_code == 200
    words = _text(shown.text)
    assert re.search(r"Not authentic: \S", words) and "Authentic: signed" not in words
    assert "<script>alert" not in shown.text and "&lt;script&gt;alert" in shown.text


def test_a_lab_without_a_result_has_no_result_page(graded: Graded) -> None:
    client = graded.client
    assert client.get("/lab/scn-0000000000000000/result").status_code == 404
    fresh = Completion("scn-" + "1" * 16, {})
    _owned_row(client, fresh)  # completed, but the scoreboard holds nothing for it
    missing = client.get(f"/lab/{fresh.scenario_id}/result")
    assert missing.status_code == 404 and "no result yet" in missing.text
    # Graded (its verdict recorded signed), its result files lost by a restore: said, in
    # a learner's words, not "no result yet" / "Waiting for the signed verdict" for ever.
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    record_finalized_audit(db, fresh.scenario_id, "0" * 64)
    lost = client.get(f"/lab/{fresh.scenario_id}/result")
    assert lost.status_code == 404 and "lost when the platform was restored" in _text(lost.text)
    lab = _text(client.get(f"/lab/{fresh.scenario_id}").text)
    assert "Your lab was graded, but its signed result is missing on the server" in lab
    assert "Waiting for the signed verdict" not in lab and "artifacts check" not in lab


@pytest.mark.parametrize(("check", "reason"), [
    ({"timed_out": True, "exit_code": None}, "the check timed out: nothing answered in time"),
    ({"timed_out": False, "exit_code": 7, "command": ["/bin/sh", "-c", "curl -sf http://h/"]},
     "a service did not answer"),
    ({"timed_out": False, "exit_code": 7, "command": ["/bin/grep", "-q", "x", "f"]},
     "what the check looks for is not there yet (it ended with exit code 7)"),
    ({"timed_out": False, "exit_code": 6, "command": ["/bin/sh", "-c", "rsync -a a b"]},
     "what the check looks for is not there yet (it ended with exit code 6)"),
    ({"timed_out": False, "exit_code": 0, "stdout": {"truncated": True}},
     "the output was too long to be judged"),
    ({"timed_out": False, "exit_code": 0}, "the result differs from what the task asks for"),
    ({"timed_out": False, "exit_code": None}, "the check could not run"),
])
def test_a_failed_check_is_explained_in_words(check: dict[str, object], reason: str) -> None:
    assert check_reason(check) == reason



def test_the_status_poll_reads_the_score_not_the_bundle(
        graded: Graded, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab page polls /status until the verdict is in; any learner with a completed lab
    may call it in a loop. Each call used to make the scoreboard read the whole result set
    and verify its evidence bundle (up to 256 MiB); now it reads score.json only."""
    from forge.services.scoreboard import routes as board_routes

    verified: list[str] = []
    real = board_routes.verify_artifacts

    def counted(*args: object, **kwargs: object) -> object:
        verified.append("x")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(board_routes, "verify_artifacts", counted)
    client, sid = graded.client, graded.done.scenario_id
    for _ in range(3):
        status = client.get(f"/lab/{sid}/status").json()
        assert status["state"] == "completed" and status["score_ready"] is True
    fresh = Completion("scn-" + "2" * 16, {})
    _owned_row(client, fresh)  # completed, no result yet
    assert client.get(f"/lab/{fresh.scenario_id}/status").json()["score_ready"] is False
    assert verified == []
    assert client.get(f"/lab/{sid}").status_code == 200  # showing the result verifies it
    assert verified == ["x"]


@pytest.mark.parametrize(("passed", "score", "outcome", "percent"), [
    ([True, True, True], 1.0, "Passed: all 3 tasks done", "100 %"),
    ([True], 1, "Passed: the task is done", "100 %"),
    ([True, False], 0.6667, "Not passed: 1 of 2 tasks done", "66.7 %"),
    ([False], 0.0, "Not passed: 0 of 1 task done", "0 %"),
    ([True, True], "0.9", "Passed: all 2 tasks done", "-"),  # no number: shown as such
])
def test_the_outcome_and_the_percentage_read_as_people_say_them(
        passed: list[bool], score: object, outcome: str, percent: str) -> None:
    doc = {"score": score, "passed": sum(passed), "total": len(passed), "criteria": [
        {"id": f"c{i}", "weight": 1, "passed": p} for i, p in enumerate(passed)]}
    view = result_view({"score": doc, "verification": {"ok": True}})
    assert (view.outcome, view.percent, view.all_passed) == (outcome, percent, all(passed))
    # A result that does not verify is never announced as the platform's "Passed".
    forged = result_view({"score": doc, "verification": {"ok": False}})
    assert forged.outcome == f"Unverified result ({outcome.lower()})"


def test_hints_line_says_free_hints_took_nothing() -> None:
    """A free hint was shown as "1 hint revealed: minus 0 % of the score" (newcomer CI)."""
    from forge.services.spawn.web.result import _hints_used

    assert _hints_used({"hints": [{"id": "h1", "cost": 0}]}) == \
        "1 free hint revealed: nothing taken off the score"
    assert _hints_used({"hints": [{"id": "h1", "cost": 0.05}, {"id": "h2", "cost": 0.05}]}) \
        == "2 hints revealed: \N{MINUS SIGN}10 % of the score"
    assert _hints_used({"hints": []}) is None


def test_a_verdict_the_scoreboard_refused_is_said_not_waited_for(graded: Graded) -> None:
    """An operator drill rotated the HMAC secrets with labs in flight: the scoreboard refused
    their completions (kept as failed events) and the learner read "Waiting for the signed
    verdict…" on the lab page and "no result yet" on the result page, for ever."""
    from forge.bus.subjects import DURABLE_SCOREBOARD_COMPLETED
    from forge.store.failed_events import list_failed_events, mark_reprocessed, record_failed_event

    client = graded.client
    sid = "scn-" + "ab" * 8
    _owned_row(client, Completion(sid, {}))  # completed, no score
    waiting = _text(client.get(f"/lab/{sid}").text)
    assert "Waiting for the signed verdict" in waiting
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    record_failed_event(db, consumer=DURABLE_SCOREBOARD_COMPLETED,
                        subject="forge.scenario.completed", msg_id="m-" + sid,
                        payload="{}", error="sat_token_unknown_key",
                        scenario_id=sid)
    lab = _text(client.get(f"/lab/{sid}").text)
    assert "could not record its signed result (a fault on the server, not in your " \
           "work). Your operator has been told" in lab
    assert "Waiting for the signed verdict" not in lab and "sat_token" not in lab
    result = client.get(f"/lab/{sid}/result")
    assert result.status_code == 503 and "Your operator has been told" in _text(result.text)
    (event,) = [e for e in list_failed_events(db) if e.scenario_id == sid]
    mark_reprocessed(db, event.id)  # reprocessed: the verdict is on its way again
    assert "Waiting for the signed verdict" in _text(client.get(f"/lab/{sid}").text)
