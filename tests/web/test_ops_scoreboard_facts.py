"""The operator page gets signing key ids and retention holds from the scoreboard's API.

spawn_service and the scoreboard each have their own STORAGE_ROOT here (services share no
disk): the keyring and the hold list exist only under the scoreboard's root, and the page
still shows them, through operator-authenticated scoreboard endpoints. When the scoreboard
is down the page says so instead of failing. Real apps (uvicorn), real nats-server.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import load_settings
from forge.content import content_path
from forge.retention.holds import HoldStore
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.services.spawn.app import build_app as build_spawn
from forge.signing.keystore import SigningKeyring, keyring_dir

from ..live_server import live_server
from ..services.conftest import SECRETS, prod_environ

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store

ORIGIN = "http://testserver"
SID = "scn-00000000000000f1"


def test_ops_page_reads_keys_and_holds_through_the_scoreboard(
        tmp_path: Path, nats: NatsServer) -> None:
    board_root, spawn_root = tmp_path / "scoreboard", tmp_path / "spawn"
    key, _ = SigningKeyring(keyring_dir(board_root, {})).ensure()
    HoldStore(board_root).hold(SID, "legal hold for the audit")
    env = {**nats.client_env(), "FORGE_DB_URL": f"sqlite:///{tmp_path / 'forge.db'}",
           "FORGE_TEMPLATE_DIR": str(content_path("templates"))}
    board = build_scoreboard(load_settings(prod_environ(board_root, **env)))
    with live_server(board) as board_url:
        # The operator API: operator token only, key ids and dates, never key material.
        anonymous = httpx.get(f"{board_url}/v1/admin/signing-keys", timeout=10)
        wrong = httpx.get(f"{board_url}/v1/admin/retention/holds", timeout=10,
                          headers={"Authorization": "Bearer " + "x" * 40})
        assert (anonymous.status_code, wrong.status_code) == (401, 401)
        operator = {"Authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}
        keys = httpx.get(f"{board_url}/v1/admin/signing-keys", headers=operator, timeout=10)
        assert keys.status_code == 200
        assert keys.json()["keys"] == [{"key_id": key.key_id, "created_at": keys.json()[
            "keys"][0]["created_at"], "retired_at": None, "current": True, "can_sign": True,
            "revoked_at": None, "revoked_reason": None}]
        assert "PRIVATE" not in keys.text
        holds = httpx.get(f"{board_url}/v1/admin/retention/holds", headers=operator,
                          timeout=10).json()["holds"]
        assert [(h["scenario_id"], h["reason"]) for h in holds] == [
            (SID, "legal hold for the audit")]

        spawn_settings = load_settings(prod_environ(
            spawn_root, **env, SCOREBOARD_URL=board_url, ORCHESTRATOR_URL="http://127.0.0.1:9"))
        with TestClient(build_spawn(spawn_settings), follow_redirects=False) as client:
            signed = client.post("/ops/signin", data={"token": SECRETS["OPERATOR_TOKEN"]},
                                 headers={"origin": ORIGIN})
            assert signed.status_code == 303
            page = client.get("/ops")
            assert page.status_code == 200
            keys_table = re.search(r'<table id="keys">.*?</table>', page.text, re.DOTALL)
            holds_table = re.search(r'<table id="holds">.*?</table>', page.text, re.DOTALL)
            assert keys_table and key.key_id in keys_table.group(0)
            assert "current" in keys_table.group(0)
            assert holds_table and SID in holds_table.group(0)
            assert "legal hold for the audit" in holds_table.group(0)
    # Nothing of the scoreboard's was on spawn_service's disk.
    assert not (spawn_root / "keys").exists() and not keyring_dir(spawn_root, {}).exists()

    # The scoreboard is gone: the page still renders and says what it cannot show.
    with TestClient(build_spawn(spawn_settings), follow_redirects=False) as client:
        client.post("/ops/signin", data={"token": SECRETS["OPERATOR_TOKEN"]},
                    headers={"origin": ORIGIN})
        page = client.get("/ops")
        assert page.status_code == 200
        assert "signing keys unavailable: scoreboard" in page.text
        assert "retention holds unavailable: scoreboard" in page.text
        assert key.key_id not in page.text
