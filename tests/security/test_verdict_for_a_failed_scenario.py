"""Attack: a signed verdict (and a badge) for a scenario the platform failed.

A lab node cut off from the bus for longer than the grace period has its labs failed by
the lease holder, `grading` ones too, and the learner is told their scenario failed. The
node, back, published the result it had finished, and the scoreboard signed it: a PASS,
and a credential issued from it, for a scenario recorded as failed. The node now reads
the scenario before publishing (tests/orchestrator/test_failed_while_graded.py); this is
the scoreboard's side, for a completion that left the node just before the move: refused
(`scenario_ended`, never scored, nothing written) when the scenario ended without a
result; a completed one is scored as before. Real scorer, signing key and store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from forge.config import Settings
from forge.evidence.artifacts import read_results
from forge.services.scoreboard.refused import CompletionRefused
from forge.services.scoreboard.scoring import Scorer
from forge.signing.keystore import SigningKeyring
from forge.store.models import Scenario
from forge.templates.registry import TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..scoreboard.conftest import build_completion, store_of
from ..scoreboard.conftest import prod_env as prod_env  # the fixture


@pytest.mark.parametrize(("state", "scored"), [("failed", False), ("expired", False),
                                               ("deleted", False), ("grading", True),
                                               ("completed", True)])
def test_a_completion_of_a_scenario_ended_without_a_result_is_not_scored(
        prod_env: Settings, tmp_path: Path, state: str, scored: bool) -> None:
    db = store_of(prod_env)
    ring = SigningKeyring(tmp_path / "keys")
    ring.ensure()
    scorer = Scorer(prod_env, TemplateRegistry.load(TEMPLATE_FIXTURES), ring, db=db)
    done = build_completion(prod_env, record_state=state)
    if scored:
        assert scorer.score(done.event).event.score == 1.0
        assert read_results(prod_env.storage_root, done.scenario_id) is not None
        return
    with pytest.raises(CompletionRefused) as refused:
        scorer.score(done.event)
    assert refused.value.code == "scenario_ended" and state in str(refused.value)
    assert read_results(prod_env.storage_root, done.scenario_id) is None


def test_a_verdict_written_before_the_scenario_ended_is_finished_on_redelivery(
        prod_env: Settings, tmp_path: Path) -> None:
    """Review BB: scored while the scenario was still grading, then the scenario failed
    (its node judged lost) before the scoreboard's finalized event went out: the
    redelivered completion finishes what was written (the same verdict), not refused."""
    db = store_of(prod_env)
    ring = SigningKeyring(tmp_path / "keys")
    ring.ensure()
    scorer = Scorer(prod_env, TemplateRegistry.load(TEMPLATE_FIXTURES), ring, db=db)
    done = build_completion(prod_env, record_state="grading")
    first = scorer.score(done.event)
    with db.session() as sess:
        sess.execute(update(Scenario).where(Scenario.scenario_id == done.scenario_id)
                     .values(state="failed"))
    again = scorer.score(done.event)
    assert again.event == first.event and again.created is False
