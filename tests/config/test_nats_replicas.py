"""FORGE_NATS_REPLICAS: how many copies JetStream keeps of each Forge stream and bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config import ConfigError, load_settings
from forge.services.common.bus import bus_streams


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"STORAGE_ROOT": str(tmp_path), **extra}


def test_default_is_one_replica_and_empty_counts_as_unset(tmp_path: Path) -> None:
    assert load_settings(_env(tmp_path)).nats_replicas == 1
    assert load_settings(_env(tmp_path, FORGE_NATS_REPLICAS="")).nats_replicas == 1


@pytest.mark.parametrize("value", ["1", "3", "5", " 3 "])
def test_odd_counts_are_accepted_and_reach_every_stream(tmp_path: Path, value: str) -> None:
    settings = load_settings(_env(tmp_path, FORGE_NATS_REPLICAS=value))
    assert settings.nats_replicas == int(value)
    assert {spec.replicas for spec in bus_streams(settings)} == {int(value)}


@pytest.mark.parametrize("value", ["0", "2", "4", "7", "three", "-1", "3.0", "³"])
def test_other_counts_are_a_problem_naming_the_variable(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_env(tmp_path, FORGE_NATS_REPLICAS=value))
    assert err.value.problems == [
        "FORGE_NATS_REPLICAS must be 1, 3 or 5 (an odd JetStream replica count, at most the "
        "number of NATS servers in the cluster)"]
