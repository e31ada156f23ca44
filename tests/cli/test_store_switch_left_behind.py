"""An installation on the default SQLite store pointed at a new database (FORGE_DB_URL to a
fresh PostgreSQL database, as the runbook's "use PostgreSQL" reads, with no word on the
data): `forge config check` said "configuration OK" and `forge up` started on the empty
store, so every API key, grant, cohort and scenario was gone, and the orchestrator's start
destroyed the learners' running labs as unknown to the store. Now both refuse, naming the
storage root's own store and what to do, and leave that store as it was (the check
reads it, with what its write-ahead log holds). Both
engines for the new store, real databases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from forge.store import Database, upgrade
from forge.store.models import Scenario

from .test_storage_option import forge


def _add_scenario(url: str, scenario_id: str) -> None:
    db = Database(url)
    try:
        now = datetime.now(UTC)
        with db.session() as sess:
            sess.add(Scenario(
                scenario_id=scenario_id, request_id=f"req-{scenario_id}", tenant_id="acme",
                subject="ann", track="netplus", template_id="netplus", template_sha256="ab" * 32,
                plan="PRO", retention_days=7, state="running", state_reason="lab running",
                sat_jti="s" * 32, et_jti=None, created_at=now, updated_at=now, expires_at=None,
                details={}, node_id="node-1", node_url="http://127.0.0.1:9"))
    finally:
        db.dispose()


def test_a_new_store_beside_a_sqlite_store_with_scenarios_is_refused(
        db_url: str, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    assert forge({"FORGE_DB_URL": None}, "--storage", str(storage), "apikey", "list")[0] == 0
    own = storage / "forge.db"
    _add_scenario(f"sqlite:///{own}", "scn-00000000000000a1")

    env: dict[str, str | None] = {"FORGE_DB_URL": db_url}
    code, out, err = forge(env, "--storage", str(storage), "config", "check")
    assert code == 1, (out, err)
    assert (f"FORGE_DB_URL names a state store with no scenarios, but the storage root's own "
            f"state store {own} holds 1: ") in out + err, (out, err)
    assert ("Unset FORGE_DB_URL to keep using it, copy it into the new store with `forge "
            "store copy` (services stopped), or move") in out + err
    assert forge({"FORGE_DB_URL": None}, "--storage", str(storage), "config", "check")[0] == 0

    # A store already in use (it holds scenarios) is the operator's choice: not refused.
    upgrade(db_url)
    _add_scenario(db_url, "scn-00000000000000b2")
    code, out, err = forge(env, "--storage", str(storage), "config", "check")
    assert code == 0 and "configuration OK" in out + err, (out, err)
