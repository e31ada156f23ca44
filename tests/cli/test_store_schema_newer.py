"""Forge rolled back to a release older than the one that migrated its store: every
operator command refuses in one line (exit 1) naming the store's revision, this release's
newest and what to do, and changes nothing. Before, each printed ~290 lines of rich
traceback ending in Alembic's "Can't locate revision identified by '9999'" (and each
service's start logged the same). Both engines, real databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from forge.store import Database
from forge.store.migrate import head_revision, upgrade

from ..stack.test_up import Up, make_env_file, some_ports
from .test_storage_option import forge


def _migrated_by_a_newer_release(storage: Path) -> None:
    """The storage root's own SQLite store, made by this release and stamped 9999 since."""
    assert forge({"FORGE_DB_URL": None}, "--storage", str(storage), "apikey", "list")[0] == 0
    database = Database(f"sqlite:///{storage / 'forge.db'}")
    try:
        with database.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        database.dispose()


def test_commands_on_a_store_migrated_by_a_newer_release_refuse_in_one_line(
        db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    database = Database(db_url)
    try:
        with database.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        env: dict[str, str | None] = {"FORGE_DB_URL": db_url}
        code, out, err = forge(env, "--storage", str(tmp_path / "storage"), "apikey",
                               "create", "--tenant", "acme", "--subject", "bob")
        said = [line for line in err.splitlines() if not line.startswith("warning: ")]
        assert code == 1 and len(said) == 1 and "Traceback" not in err + out, (out, err)
        assert said[0].startswith("forge: not done, the state store is at schema revision "
                                  f"9999, which this release does not know (its newest is "
                                  f"{head_revision()})"), err
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() \
                == [("9999",)]
            assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0
    finally:
        database.dispose()


@pytest.mark.usefixtures("sqlite_only_store")  # forge up runs the services' default store
def test_config_check_and_up_refuse_a_store_a_newer_release_migrated(tmp_path: Path) -> None:
    """A restored backup made by a newer release: `forge config check` said "configuration
    OK", and `forge up` started NATS and the services, which died at every start and were
    restarted until --ready-timeout (2 minutes by default), reported only as "exited with
    code 3 (error: Application startup failed. Exiting.)", the revision buried in a
    traceback in each service's log. Both now name the revision in one line, and `forge up`
    starts nothing and takes nothing."""
    storage = tmp_path / "storage"
    env: dict[str, str | None] = {"FORGE_DB_URL": None}
    _migrated_by_a_newer_release(storage)
    said = ("the state store is at schema revision 9999, which this release does not know "
            f"(its newest is {head_revision()})")

    code, out, err = forge(env, "--storage", str(storage), "config", "check")
    assert code == 1 and said in out + err, (out, err)
    assert "configuration OK" not in out + err

    up = Up(storage, make_env_file(tmp_path), some_ports(), extra=("--ready-timeout", "20"))
    try:
        up.proc.wait(timeout=120)
    finally:
        up.stop()
    assert up.proc.returncode == 1, up.err[-2000:]
    assert said in up.err, up.err[-2000:]
    assert "exited with code" not in up.err and "Forge is up" not in up.err
    assert up.service_pids() == [] and up.nats_pids() == []
    database = Database(f"sqlite:///{storage / 'forge.db'}")
    try:
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() \
                == [("9999",)]
    finally:
        database.dispose()


@pytest.mark.usefixtures("sqlite_only_store")
@pytest.mark.parametrize("service", ["spawn", "scoreboard"])
def test_a_service_started_alone_on_such_a_store_says_it_in_one_line(
        tmp_path: Path, service: str) -> None:
    """`forge serve` run by hand or by a unit file (as the runbook's several machines do):
    its log held the revision only at the end of a traceback of ~60 frames from the app's
    start ("Application startup failed", exit 3). Now one line, before uvicorn runs (1)."""
    storage = tmp_path / "storage"
    _migrated_by_a_newer_release(storage)
    run_env = {**os.environ, "FORGE_ENV": "dev", "STORAGE_ROOT": str(storage)}
    run_env.pop("FORGE_DB_URL", None)
    done = subprocess.run([sys.executable, "-m", "forge", "serve", service, "--port", "0"],
                          env=run_env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert (f"forge serve {service}: not started, the state store is at schema revision "
            f"9999, which this release does not know") in done.stderr
    assert "Application startup failed" not in done.stderr
