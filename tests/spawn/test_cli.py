"""Operator commands for learners: API keys, grants, receipts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from forge.config import load_settings
from forge.identity.apikeys import verify_api_key
from forge.store.db import Database
from forge.tokens import RECEIPT, verify_token

from ..services.conftest import prod_environ

FORGE = [sys.executable, "-m", "forge"]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "SAT_", "ET_"))}
    full.update(env)
    return subprocess.run([*FORGE, *args], env=full, capture_output=True, text=True, timeout=60)


def test_apikey_lifecycle(tmp_path: Path, db_url: str) -> None:
    env = prod_environ(tmp_path, FORGE_DB_URL=db_url)
    created = run(env, "apikey", "create", "--tenant", "acme", "--subject", "alice")
    assert created.returncode == 0, created.stderr
    lines = dict(line.split(maxsplit=1) for line in created.stdout.splitlines())
    settings = load_settings(env)
    db = Database(settings.db_url)
    record = verify_api_key(db, lines["api_key"])
    assert record is not None and record.tenant_id == "acme" and record.subject == "alice"
    listed = run(env, "apikey", "list")
    assert lines["key_id"] in listed.stdout and lines["api_key"] not in listed.stdout
    assert run(env, "apikey", "revoke", lines["key_id"]).returncode == 0
    assert verify_api_key(db, lines["api_key"]) is None
    assert run(env, "apikey", "revoke", lines["key_id"]).returncode == 1
    bad = run(env, "apikey", "create", "--tenant", "a/../b", "--subject", "x")
    assert bad.returncode != 0 and "tenant_id" in bad.stderr


def test_entitlements_grant_list_revoke(tmp_path: Path, db_url: str) -> None:
    env = prod_environ(tmp_path, FORGE_DB_URL=db_url)
    assert run(env, "entitlements", "grant", "--tenant", "acme", "--plan", "pro").returncode == 0
    listed = run(env, "entitlements", "list")
    assert "acme" in listed.stdout and "PRO" in listed.stdout
    first = run(env, "entitlements", "revoke", "--tenant", "acme")
    assert first.returncode == 0 and first.stdout.startswith("revoked the PRO grant of acme/*")
    # No live grant left: the revoke is still recorded (it ends receipts issued until now).
    again = run(env, "entitlements", "revoke", "--tenant", "acme")
    assert again.returncode == 0 and "no live grant for acme/*" in again.stdout
    assert "receipts of every learner of acme issued at or before" in again.stdout
    bad_owner = run(env, "entitlements", "revoke", "--tenant", "a/b")
    assert bad_owner.returncode != 0 and "tenant_id" in bad_owner.stderr
    bad = run(env, "entitlements", "grant", "--tenant", "acme", "--plan", "GOLD")
    assert bad.returncode != 0 and "unknown plan" in bad.stderr


def test_entitlements_grant_days_beyond_the_calendar_is_a_usage_error(
        tmp_path: Path, db_url: str) -> None:
    """--days past 100 years overflowed the expiry date: a traceback, exit 1. Now a bad
    argument (exit 2, naming --days) and no grant; 100 years is still granted."""
    env = prod_environ(tmp_path, FORGE_DB_URL=db_url)
    for days in ("36501", "3000000", "99999999999999"):
        bad = run(env, "entitlements", "grant", "--tenant", "acme", "--subject", "bob",
                  "--plan", "pro", "--days", days)
        assert bad.returncode == 2, bad.stderr
        assert "--days" in bad.stderr and "Traceback" not in bad.stderr + bad.stdout
    ok = run(env, "entitlements", "grant", "--tenant", "acme", "--subject", "alice",
             "--plan", "pro", "--days", "36500")
    assert ok.returncode == 0, ok.stderr
    listed = run(env, "entitlements", "list")
    assert "alice" in listed.stdout and "bob" not in listed.stdout


def test_receipt_mint(tmp_path: Path) -> None:
    env = prod_environ(tmp_path)
    out = run(env, "receipt", "mint", "--tenant", "acme", "--plan", "TEAM", "--subject", "alice",
              "--days", "7")
    assert out.returncode == 0, out.stderr
    claims = verify_token(load_settings(env).receipt, RECEIPT, out.stdout.strip())
    assert claims["plan"] == "TEAM" and claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 7 * 86400
    bad = run(env, "receipt", "mint", "--tenant", "acme", "--plan", "TEAM", "--days", "999")
    assert bad.returncode != 0 and "days" in bad.stderr
