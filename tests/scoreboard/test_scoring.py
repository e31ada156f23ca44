"""The scoring step on its own: pauses (never partial results) and dev-mode keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config import Settings, load_settings
from forge.config.flags import ForgeEnv
from forge.services.scoreboard.scoring import Scorer
from forge.services.scoreboard.scoring_errors import ScoringPaused
from forge.signing.keystore import SigningKeyring
from forge.templates.registry import TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..services.conftest import prod_environ
from .conftest import build_completion, store_of


def test_unwritable_storage_pauses_without_partial_results(prod_env: Settings,
                                                           tmp_path: Path) -> None:
    done = build_completion(prod_env)
    ring = SigningKeyring(tmp_path / "keys")
    ring.ensure()
    # The storage root's place is taken by a file: nothing can be written under it.
    blocked = prod_env.model_copy(update={"storage_root": tmp_path / "storage-file"})
    blocked.storage_root.write_text("not a directory")
    scorer = Scorer(blocked, TemplateRegistry.load(TEMPLATE_FIXTURES), ring,
                    db=store_of(prod_env))
    with pytest.raises(ScoringPaused, match="not writable"):
        scorer.score(done.event)
    assert blocked.storage_root.read_text() == "not a directory"


@pytest.mark.usefixtures("sqlite_only_store")
def test_missing_key_pauses_outside_dev_and_is_generated_once_in_dev(tmp_path: Path) -> None:
    environ = prod_environ(tmp_path / "storage")
    prod = load_settings(environ)
    done = build_completion(prod)
    registry = TemplateRegistry.load(TEMPLATE_FIXTURES)
    ring = SigningKeyring(tmp_path / "keys")
    db = store_of(prod)
    with pytest.raises(ScoringPaused, match="forge keys generate"):
        Scorer(prod, registry, ring, db=db).score(done.event)
    assert ring.current_or_none() is None

    dev = prod.model_copy(update={"env": ForgeEnv.DEV})
    first = Scorer(dev, registry, ring, db=db).score(done.event)
    assert first.created and ring.current_or_none() is not None
    kid = ring.current().key_id
    again = Scorer(dev, registry, ring, db=db).score(done.event)
    assert not again.created and ring.current().key_id == kid
    assert first.payload["key_id"] == kid
