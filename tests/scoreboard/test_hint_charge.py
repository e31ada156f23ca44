"""The scoreboard charges the hints a learner revealed, as recorded in the store.

The reveal is recorded by spawn_service (`forge.grading.learner_aids.reveal_hint`); the
scoreboard reads it back when it scores, so the signed score is raw - cost whatever the
completion event says, the hints are listed in score.json and in the bundle (`aids.json`),
and the offline verifier recomputes the same number. A lab without reveals scores as before.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forge.config import Settings
from forge.errors import ForgeError
from forge.evidence.artifacts import read_results
from forge.grading.learner_aids import hint_facts, reveal_hint
from forge.services.scoreboard.scoring import Scorer
from forge.signing.keystore import SigningKeyring
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Scenario
from forge.templates.registry import TemplateRegistry
from forge_verify.bundle import read_bundle

from ..conftest import TEMPLATE_FIXTURES
from .conftest import TEMPLATE, VERIFY_SCRIPT, build_completion

HINTS = """  hints:
    - criterion: saved-page
      text: Look at what the target serves on its port.
    - criterion: saved-page
      cost: 0.25
      text: curl -o saves a page unchanged.
    - text: The router is the gateway of both subnets.
      cost: 0.1
"""


def _templates(tmp_path: Path) -> TemplateRegistry:
    """The test templates, lab-netplus with three hints (free, 25 %, 10 %)."""
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATE_FIXTURES, directory)
    path = directory / f"{TEMPLATE}.yaml"
    path.write_text(path.read_text(encoding="utf-8") + HINTS, encoding="utf-8")
    return TemplateRegistry.load(directory)


def _row(db: Database, sid: str, state: str) -> None:
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id="acme",
                          subject="alice", track="netplus", template_id=TEMPLATE, plan="PRO",
                          state=state, created_at=now, updated_at=now, details={}))


def test_revealed_hints_are_charged_in_the_signed_score(prod_env: Settings,
                                                       tmp_path: Path) -> None:
    upgrade(prod_env.db_url)
    db = Database(prod_env.db_url)
    registry = _templates(tmp_path)
    loaded = registry.get(TEMPLATE)
    facts = hint_facts(loaded.template.spec.hints)
    ring = SigningKeyring(tmp_path / "keys")
    ring.ensure()
    scorer = Scorer(prod_env, registry, ring, db=db)
    try:
        done = build_completion(prod_env, record_state=None)
        done.body["template"]["sha256"] = loaded.sha256
        _row(db, done.scenario_id, "running")
        with pytest.raises(ForgeError, match="reveal hint 1 first"):
            reveal_hint(db, done.scenario_id, "acme", facts[1], facts)
        for hint in (facts[0], facts[1]):
            reveal_hint(db, done.scenario_id, "acme", hint, facts)
        with pytest.raises(ForgeError) as other_tenant:
            reveal_hint(db, done.scenario_id, "evil", facts[2], facts)
        assert other_tenant.value.status == 404

        finalized = scorer.score(done.event)
        assert finalized.event.score == 0.75  # 1.0 earned, h2 costs 0.25, h1 is free
        files = read_results(prod_env.storage_root, done.scenario_id)
        assert files is not None
        doc = json.loads(files["score.json"])
        assert doc["raw_score"] == 1.0
        assert [(h["id"], h["cost"]) for h in doc["hints"]] == [("h1", 0.0), ("h2", 0.25)]
        aids = json.loads(read_bundle(files["evidence.tar.zst"])["aids.json"])
        assert aids["hints"] == doc["hints"]

        # The offline verifier recomputes the charged score from the four files alone.
        out = tmp_path / "out"
        out.mkdir()
        for name in ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub"):
            (out / name).write_bytes(files[name])
        proc = subprocess.run([sys.executable, str(VERIFY_SCRIPT), "--json",
                               *(str(out / n) for n in ("score.json", "evidence.tar.zst",
                                                        "verdict.sig", "verdict.pub"))],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout
        assert json.loads(proc.stdout)["score"] == 0.75

        # No reveal: the result has no hints and the same bytes as without aids.
        plain = build_completion(prod_env, record_state=None)
        plain.body["template"]["sha256"] = loaded.sha256
        _row(db, plain.scenario_id, "running")
        assert scorer.score(plain.event).event.score == 1.0
        plain_files = read_results(prod_env.storage_root, plain.scenario_id)
        assert plain_files is not None
        assert "hints" not in json.loads(plain_files["score.json"])
        assert "aids.json" not in read_bundle(plain_files["evidence.tar.zst"])
    finally:
        db.dispose()
