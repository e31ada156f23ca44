"""`forge apikey revoke` when the node of the learner's running lab does not answer: the key
is revoked all the same, and the operator is told the terminals there stay until their idle
limit (the closing itself is proven live in tests/security/test_terminal_signout.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from forge.config import load_settings
from forge.identity.apikeys import create_api_key, verify_api_key
from forge.store.db import Database
from forge.store.models import Scenario

from ..conftest import SQLITE_ONLY
from ..live_server import distinct_ports
from .test_storage_option import forge


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_revoke_says_when_a_labs_node_did_not_answer(tmp_path: Path, engine: str) -> None:
    (silent,) = distinct_ports(1)  # nothing listens there
    env: dict[str, str | None] = {"STORAGE_ROOT": str(tmp_path / "st"), "FORGE_DB_URL": None,
                                  "ORCHESTRATOR_URL": f"http://127.0.0.1:{silent}"}
    code, _, err = forge(env, "apikey", "list")
    assert code == 0, err
    db = Database(load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "st")}).db_url)
    issued = create_api_key(db, "acme", "alice")
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Scenario(scenario_id="s" * 32, request_id="r", tenant_id="acme",
                          subject="alice", track="netplus", template_id="lab-netplus",
                          template_sha256="0" * 64, plan="PRO", retention_days=30,
                          state="running", state_reason="", sat_jti=None, et_jti=None,
                          created_at=now, updated_at=now, expires_at=None, details={}))

    code, out, err = forge(env, "apikey", "revoke", issued.key_id)
    assert code == 0, err
    assert out.splitlines() == [f"revoked {issued.key_id}",
                                "closed 0 open terminal session(s) of alice"]
    assert ("warning: the node of 1 running lab(s) did not answer; terminals open there end "
            "at their idle limit") in err
    assert verify_api_key(db, issued.plaintext) is None
