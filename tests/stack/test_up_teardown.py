"""`forge up --teardown-labs` across nodes: a node that cannot be torn down does not stop
the others; every failure is reported and the labs destroyed are counted."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forge.cli.lab_sweep import teardown_nodes
from forge.config import load_settings
from forge.lifecycle import states
from forge.lifecycle.torn_down import TORN_DOWN
from forge.runtime.local import LocalRuntime
from forge.runtime.recording import recordings_dir
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import QuotaSlot, Scenario
from tests.runtime.helpers import simple_lab

from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


def test_a_failing_node_does_not_stop_the_others(tmp_path: Path) -> None:
    broken_root = tmp_path / "broken"
    broken_root.mkdir()
    (broken_root / "runtime").write_text("not a directory\n")  # its runtime cannot open
    good_root = tmp_path / "good"
    prefix = runtime_prefix("v")
    broken = load_settings({"STORAGE_ROOT": str(broken_root),
                            "FORGE_RUNTIME_PREFIX": runtime_prefix("v")})
    good = load_settings({"STORAGE_ROOT": str(good_root), "FORGE_RUNTIME_PREFIX": prefix})
    runtime = LocalRuntime(str(good_root / "runtime"), prefix=prefix)
    lab_id = "td-" + secrets.token_hex(3)
    try:
        runtime.create(simple_lab(lab_id))
        result = teardown_nodes([("node a", broken), ("node b", good)])
        assert result.destroyed == 1
        assert len(result.failures) == 1 and result.failures[0].startswith("node a: ")
        assert runtime.list() == []
    finally:
        if os.path.isdir(runtime.names.lab_dir(lab_id)):
            runtime.destroy(lab_id)
        runtime.close()


def test_the_scenarios_of_labs_torn_down_end_failed_with_their_slots_freed(
        tmp_path: Path, db_url: str) -> None:
    """Before, their rows stayed `running` with the slots held while the platform was down,
    and the next start failed them as "lost while the orchestrator was down"."""
    root = tmp_path / "node"
    prefix = runtime_prefix("w")
    settings = load_settings({"STORAGE_ROOT": str(root), "FORGE_RUNTIME_PREFIX": prefix,
                              "FORGE_DB_URL": db_url})
    upgrade(settings.db_url)
    db = Database(settings.db_url)
    runtime = LocalRuntime(str(root / "runtime"), prefix=prefix)
    live, graded, done, stored = ("scn-" + secrets.token_hex(8) for _ in range(4))
    now = datetime.now(UTC)
    try:
        with db.session() as sess:
            for sid, state in ((live, states.RUNNING), (graded, states.GRADING),
                               (done, states.COMPLETED), (stored, states.GRADING)):
                sess.add(Scenario(
                    scenario_id=sid, request_id="r-" + sid, tenant_id="acme", subject="ann",
                    track="netplus", template_id="lab-netplus", plan="PRO", state=state,
                    created_at=now, updated_at=now, details={}))
                sess.add(QuotaSlot(scenario_id=sid, tenant_id="acme", subject="ann",
                                   acquired_at=now, expires_at=now + timedelta(hours=1)))
        for sid in (live, graded, stored):
            runtime.create(simple_lab(sid))
        # What the node keeps of a live lab: its terminal recordings, and for `stored` a
        # grading result waiting to be published (its lab not yet torn down).
        for sid in (live, graded, stored):
            recordings_dir(settings.storage_root, sid).mkdir(parents=True)
            (recordings_dir(settings.storage_root, sid) / "learner.1.cast").write_text("{}")
        (root / "scenarios" / stored / "completion.json").write_text("{}")
        result = teardown_nodes([("node a", settings)])
        assert (result.destroyed, result.failures) == (3, []) and runtime.list() == []
        with db.read() as sess:
            rows = {sid: sess.get(Scenario, sid) for sid in (live, graded, done, stored)}
            slots = {sid: sess.get(QuotaSlot, sid) for sid in (live, graded, done, stored)}
            for sid in (live, graded):
                assert (rows[sid].state, rows[sid].state_reason) == (states.FAILED, TORN_DOWN)
                assert slots[sid].released_at is not None
                assert not recordings_dir(settings.storage_root, sid).exists()
            assert rows[done].state == states.COMPLETED  # no lab of its own: untouched
            assert slots[done].released_at is None
            # Graded already: left for the next start to publish, the result kept.
            assert rows[stored].state == states.GRADING and slots[stored].released_at is None
            assert (root / "scenarios" / stored / "completion.json").exists()
    finally:
        for sid in (live, graded, stored):
            if os.path.isdir(runtime.names.lab_dir(sid)):
                runtime.destroy(sid)
        runtime.close()
        db.dispose()
