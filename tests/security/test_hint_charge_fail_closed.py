"""Attack: get revealed hints for free by scoring where the reveals cannot be seen.

The scoreboard charges a hint's cost only from the reveals recorded in the store. It used to
go on when it found nothing to read: no scenario record (a scoreboard on another store, a
row lost or not yet replicated) scored the lab as if no hint had been revealed, and a
reveal was charged at the template's current cost rather than the one the learner was
shown. Now the scenario's record is required (scoring pauses, nothing is written, the
completion stays queued) and each reveal is charged at the cost stored with it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forge.config import Settings
from forge.evidence.artifacts import read_results
from forge.grading.learner_aids import hint_facts, reveal_hint
from forge.services.scoreboard.scoring import Scorer
from forge.services.scoreboard.scoring_errors import ScoringPaused
from forge.signing.keystore import SigningKeyring
from forge.templates.registry import TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..scoreboard.conftest import TEMPLATE, build_completion, record_scenario, store_of
from ..scoreboard.conftest import prod_env as prod_env  # the fixture


def _registry(tmp_path: Path, name: str, cost: float) -> TemplateRegistry:
    """The test templates, lab-netplus with one hint costing `cost`."""
    directory = tmp_path / name
    shutil.copytree(TEMPLATE_FIXTURES, directory)
    path = directory / f"{TEMPLATE}.yaml"
    path.write_text(path.read_text(encoding="utf-8") + f"""  hints:
    - criterion: saved-page
      cost: {cost}
      text: curl -o saves a page unchanged.
""", encoding="utf-8")
    return TemplateRegistry.load(directory)


def test_hints_are_charged_from_the_record_or_not_scored_at_all(prod_env: Settings,
                                                                tmp_path: Path) -> None:
    db = store_of(prod_env)
    ring = SigningKeyring(tmp_path / "keys")
    ring.ensure()
    shown = _registry(tmp_path, "shown", 0.25)  # what the learner saw when revealing
    facts = hint_facts(shown.get(TEMPLATE).template.spec.hints)

    # 1. No record of the scenario where the scoreboard looks: paused, nothing written.
    unknown = build_completion(prod_env, record_state=None)
    unknown.body["template"]["sha256"] = shown.get(TEMPLATE).sha256
    with pytest.raises(ScoringPaused, match="no record"):
        Scorer(prod_env, shown, ring, db=db).score(unknown.event)
    assert read_results(prod_env.storage_root, unknown.scenario_id) is None

    # Once the record is there (the same completion, redelivered), the hint is charged.
    record_scenario(prod_env, unknown.scenario_id, state="running")
    reveal_hint(db, unknown.scenario_id, "acme", facts[0], facts)
    finalized = Scorer(prod_env, shown, ring, db=db).score(unknown.event)
    assert finalized.event.score == 0.75

    # 2. The template's cost changed after the reveal: the stored cost is what is charged.
    done = build_completion(prod_env, record_state="running")
    reveal_hint(db, done.scenario_id, "acme", facts[0], facts)
    cheaper = _registry(tmp_path, "cheaper", 0.0)
    done.body["template"]["sha256"] = cheaper.get(TEMPLATE).sha256
    Scorer(prod_env, cheaper, ring, db=db).score(done.event)
    files = read_results(prod_env.storage_root, done.scenario_id)
    assert files is not None
    doc = json.loads(files["score.json"])
    assert [(h["id"], h["cost"]) for h in doc["hints"]] == [("h1", 0.25)]
    assert doc["score"] == 0.75
    db.dispose()
