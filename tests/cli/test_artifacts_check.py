"""`forge artifacts check` after a restore: a backup whose store and storage root were copied
at different moments (a verdict being published meanwhile) restores a lab the store records
as scored without its signed files (its learner sees it graded, the score answers 404), or
signed files the store does not know. Before, no `forge` command and no `/readyz` said so."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forge.audit.log import global_log
from forge.cli.restore_check import retention_deleted
from forge.config import load_settings
from forge.evidence.artifacts import results_dir, write_results
from forge.store.db import Database
from forge.store.models import FinalizedAudit, Scenario

from ..evidence.sample import OTHER_SCENARIO_ID, SCENARIO_ID, build
from .test_storage_option import forge

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


def _scored(db: Database, sid: str) -> None:
    """The store's record of a scenario graded, its verdict audited (as the scoreboard)."""
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id="acme",
                          subject="alice", track="netplus", template_id="netplus",
                          plan="PRO", state="completed", state_reason="graded (submitted)",
                          created_at=now, updated_at=now))
        sess.flush()  # the marker refers to the scenario's row
        sess.add(FinalizedAudit(scenario_id=sid, score_sha256="0" * 64, audited_at=now))


def test_check_names_a_lab_graded_without_its_signed_files_and_files_the_store_lacks(
        tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    env: dict[str, str | None] = {"STORAGE_ROOT": str(storage), "FORGE_DB_URL": None}
    # A root and store with no scenario (a mistyped STORAGE_ROOT: a new one) were "agree",
    # exit 0, after a restore; nothing was checked, so it says so and exits 2.
    code, out, err = forge(env, "artifacts", "check")  # makes and migrates the store
    assert (code, out) == (2, "")
    assert "nothing to check: the store records no scenario" in err
    assert "is STORAGE_ROOT (and FORGE_DB_URL) the restored installation's?" in err
    db = Database(load_settings({"STORAGE_ROOT": str(storage)}).db_url)
    _scored(db, SCENARIO_ID)
    write_results(storage, build(tmp_path / "a", scenario_id=SCENARIO_ID))
    code, out, _ = forge(env, "artifacts", "check")
    assert (code, out.strip()) == (0, "the state store and the results folders agree")

    # The storage root copied before the verdict was written, the store after it.
    shutil.rmtree(results_dir(storage, SCENARIO_ID))
    # And signed files whose store row the backup does not hold (store copied first).
    write_results(storage, build(tmp_path / "b", scenario_id=OTHER_SCENARIO_ID))
    code, out, err = forge(env, "artifacts", "check")
    assert code == 1
    assert f"{SCENARIO_ID}: files_missing: the store records its verdict" in out
    assert f"{OTHER_SCENARIO_ID}: not_recorded: signed results, but the store has no" in out
    assert "a lab graded without its signed files: restore the storage root from a copy " \
        "made after the store's" in err
    assert "signed files the store does not record: their verdicts are still served" in err
    code, out, _ = forge(env, "artifacts", "check", "--json")
    assert code == 1 and [(m["scenario_id"], m["problem"]) for m in json.loads(out)] == [
        (SCENARIO_ID, "files_missing"), (OTHER_SCENARIO_ID, "not_recorded")]

    # Results retention removed are no mismatch; a half-copied results folder is one. The
    # global audit log is read a line at a time, an overlong entry skipped: it was read
    # whole, so a large log could exhaust the memory of the check.
    global_log(storage).append("operator.note", {"text": "x" * (8 * 1024 * 1024)})
    global_log(storage).append("retention.deleted", {"scenario_id": SCENARIO_ID,
                                                     "expired_at": None, "reason": ""})
    tracemalloc.start()
    try:
        assert retention_deleted(storage) == {SCENARIO_ID}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak
    (results_dir(storage, OTHER_SCENARIO_ID) / "verdict.sig").unlink()
    code, out, _ = forge(env, "artifacts", "check")
    assert code == 1 and SCENARIO_ID not in out
    assert f"{OTHER_SCENARIO_ID}: files_incomplete: results/ lacks verdict.sig" in out
    # Results in the JetStream bucket are not in a storage root backup: said, not checked.
    code, _, err = forge({**env, "FORGE_ARTIFACT_STORE": "jetstream"}, "artifacts", "check")
    assert code == 2 and "FORGE_ARTIFACT_STORE=jetstream the results are in the bucket" in err
