"""A learner downloads the credential of their own passing lab from its result page, and
nobody else can: another learner of the same tenant or of another tenant gets the same 404
as for a lab that does not exist, a failing lab gets no credential (409 with the reason,
in words), and the file verifies offline with the command the page states.

Real spawn_service pages (TestClient) over a real scoreboard on loopback that scored real
completion events. Before this change the result page offered no credential and
`/lab/{id}/credential` was a 404 page for everyone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from forge.bus import NatsServer
from forge.cli import app as forge_cli
from forge.config import Settings, load_settings
from forge.content import content_path
from forge.identity.apikeys import create_api_key
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.services.scoreboard.scoring import Scorer
from forge.services.spawn.app import build_app
from forge.store.issued_credentials import list_credentials, revoke_credential
from forge.templates.registry import TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..live_server import live_server
from ..scoreboard.conftest import Completion, build_completion, store_of
from ..services.conftest import prod_environ, with_signing_key
from ..web.test_human_pages import JARGON
from ..web.test_pages import sign_in
from ..web.test_result_page import _owned_row

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


@dataclass
class Labs:
    """A spawn app signed in as acme/alice with one passing and one failing graded lab."""

    client: TestClient
    settings: Settings
    passed: Completion
    failed: Completion
    board_url: str


@pytest.fixture
def labs(tmp_path: Path, nats: NatsServer) -> Iterator[Labs]:
    storage = with_signing_key(tmp_path / "storage")
    db = f"sqlite:///{tmp_path / 'forge.db'}"
    board_settings = load_settings(prod_environ(storage, **nats.client_env(), FORGE_DB_URL=db))
    scorer = Scorer(board_settings, TemplateRegistry.load(TEMPLATE_FIXTURES),
                    db=store_of(board_settings))
    passed = build_completion(board_settings)
    failed = build_completion(board_settings, passed=False)
    for done in (passed, failed):
        scorer.score(done.event)
    with live_server(build_scoreboard(board_settings)) as board_url:
        settings = load_settings(prod_environ(
            storage, **nats.client_env(), FORGE_DB_URL=db,
            FORGE_TEMPLATE_DIR=str(content_path("templates")),
            ORCHESTRATOR_URL="http://127.0.0.1:9", SCOREBOARD_URL=board_url))
        with TestClient(build_app(settings), follow_redirects=False) as client:
            sign_in(client, settings)
            _owned_row(client, passed)
            _owned_row(client, failed)
            yield Labs(client, settings, passed, failed, board_url)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_only_the_owner_of_a_passing_lab_gets_a_credential_that_verifies(
        labs: Labs, tmp_path: Path) -> None:
    client, sid = labs.client, labs.passed.scenario_id
    page = client.get(f"/lab/{sid}/result")
    assert page.status_code == 200
    words = _text(page.text)
    assert "You passed this lab, so you can download a digital credential" in words
    assert "they can check it without contacting us" in words
    assert [w for w in JARGON if w in words.lower()] == []  # no token jargon for people
    link = re.search(r'<a id="credential-link" href="([^"]+)">', page.text)
    assert link is not None and link.group(1) == f"/lab/{sid}/credential"
    got = client.get(link.group(1))
    assert got.status_code == 200 and got.headers["content-type"] == "application/vc+jwt"
    assert got.headers["content-disposition"] == 'attachment; filename="credential.vc"'
    assert client.get(link.group(1)).content == got.content  # the same file every time

    # The page's command, with the learner's own downloads, says PASS (the key that signed
    # the verdict is the one that signed the credential).
    stated = re.search(r"<code>(forge-verify credential [^<]+)</code>", page.text)
    assert stated is not None
    (tmp_path / "credential.vc").write_bytes(got.content)
    sig = client.get(f"/lab/{sid}/artifacts/verdict.sig").content
    # The platform's keys, from the link the page gives (this site, not the learner's
    # files): the scoreboard's public keys, to anyone, signed in or not.
    keys_link = re.search(r'<a href="(/forge-keys\.pem)" download>forge-keys\.pem</a>',
                          page.text)
    assert keys_link is not None and 'id="keys-link"' in page.text
    keys = httpx.Client().get(f"{labs.board_url}/v1/credentials/keys").content
    public = TestClient(client.app).get(keys_link.group(1))
    assert public.status_code == 200 and public.content == keys
    assert public.headers["content-disposition"] == 'attachment; filename="forge-keys.pem"'
    (tmp_path / "forge-keys.pem").write_bytes(public.content)
    (tmp_path / "verdict.sig").write_bytes(sig)
    args = stated.group(1).split()[2:]  # after `forge-verify credential`
    args = [str(tmp_path / a) if a.endswith((".vc", ".pem")) else a for a in args]
    run = CliRunner().invoke(forge_cli, ["verify-credential", *args,
                                         "--verdict", str(tmp_path / "verdict.sig")])
    assert run.exit_code == 0, run.output
    # The command names this learner's account: handed over by anyone else, it says FAIL.
    named = args.index("--expect-learner") + 1
    assert args[named] == f"{labs.passed.body['tenant_id']}/{labs.passed.body['subject']}"
    other = [*args[:named], "acme/someone-else", *args[named + 1:]]
    impostor = CliRunner().invoke(forge_cli, ["verify-credential", *other])
    assert impostor.exit_code == 1 and "learner_mismatch" in impostor.output, impostor.output

    # A failing lab: no link, a plain reason, and the download is refused in words.
    failed = labs.failed.scenario_id
    shown = client.get(f"/lab/{failed}/result")
    assert "credential-link" not in shown.text
    assert "No credential for this attempt: one is issued only when every objective of the " \
           "lab is met" in _text(shown.text)
    refused = client.get(f"/lab/{failed}/credential", headers={"accept": "text/html"})
    assert refused.status_code == 409
    assert "1 of 2 criteria passed" in refused.text and "scoreboard" not in refused.text

    # Anyone else: the same 404 as a lab that does not exist, and no token in the answer.
    for tenant, subject in (("acme", "bob"), ("evil", "alice")):
        client.cookies.clear()
        sign_in(client, labs.settings, tenant, subject)
        other = client.get(f"/lab/{sid}/credential", headers={"accept": "text/html"})
        assert other.status_code == 404
        assert got.content not in other.content and "credential-link" not in other.text
    client.cookies.clear()
    anonymous = client.get(f"/lab/{sid}/credential", headers={"accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith(
        "/signin")

    # The same rules one layer down, where the credential is signed: anyone else gets the
    # 404 of a missing score, no one gets one for a failing verdict, nothing more is stored.
    db = labs.client.app.state.spawn.ctx.db  # type: ignore[attr-defined]

    def key(tenant: str, subject: str) -> dict[str, str]:
        return {"x-api-key": create_api_key(db, tenant, subject).plaintext}

    with httpx.Client(base_url=labs.board_url, timeout=20) as board:
        # The owner's credential, issued above and read back from the store: its time
        # names its zone (UTC), as when it was issued; it read "2026-12-07T17:38:56", a
        # time a client takes for its own local time, once the row came from SQLite.
        mine = board.post(f"/v1/scores/{sid}/credential", headers=key("acme", "alice"))
        assert mine.status_code == 200 and mine.json()["credential"] == got.text
        assert datetime.fromisoformat(mine.json()["issued_at"]).utcoffset() == timedelta(0)
        refused = board.post(f"/v1/scores/{failed}/credential", headers=key("acme", "alice"))
        assert refused.status_code == 409
        assert refused.json()["error"] == "credential_not_earned"
        for other in (key("acme", "bob"), key("globex", "alice")):
            stolen = board.post(f"/v1/scores/{sid}/credential", headers=other)
            assert stolen.status_code == 404 and "credential" not in stolen.json()
        assert board.post(f"/v1/scores/{sid}/credential").status_code == 401
    assert [c.scenario_id for c in list_credentials(db)] == [sid]  # only the owner's


def test_the_page_does_not_vouch_for_revocation_with_a_command_that_does_not_check_it(
        labs: Labs, tmp_path: Path) -> None:
    """The page said its command "says PASS for a genuine, unrevoked credential"; that
    command has no status list, so it said PASS for a credential the operator had revoked.
    The page now says PASS means genuine, and how a revoked one is made to FAIL."""
    client, sid = labs.client, labs.passed.scenario_id
    page = client.get(f"/lab/{sid}/result")
    (tmp_path / "credential.vc").write_bytes(client.get(f"/lab/{sid}/credential").content)
    (tmp_path / "forge-keys.pem").write_bytes(client.get("/forge-keys.pem").content)
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    [issued] = list_credentials(db)
    assert revoke_credential(db, issued.credential_id, "academic misconduct") is not None
    stated = re.search(r"<code>(forge-verify credential [^<]+)</code>", page.text)
    assert stated is not None
    args = [str(tmp_path / a) if a.endswith((".vc", ".pem")) else a
            for a in stated.group(1).split()[2:]]
    plain = CliRunner().invoke(forge_cli, ["verify-credential", *args])
    assert plain.exit_code == 0 and plain.output.startswith("PASS")  # revoked, yet PASS...
    words = _text(page.text)
    assert "unrevoked" not in words  # ...so the page must not say PASS means unrevoked
    assert "It says PASS for a genuine credential of yours" in words
    assert "with --status-list status-list.txt added" in words
    assert "a revoked credential says FAIL" in words
    # and what the page says holds: a fresh status list makes the revoked credential FAIL
    status = httpx.Client().get(f"{labs.board_url}/v1/credentials/status/1")
    assert status.status_code == 200
    (tmp_path / "status-list.txt").write_bytes(status.content)
    checked = CliRunner().invoke(forge_cli, ["verify-credential", *args,
                                             "--status-list", str(tmp_path / "status-list.txt")])
    assert checked.exit_code == 1 and "[revoked]" in checked.output, checked.output
