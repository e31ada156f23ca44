"""Where a node keeps a scenario's files: one spelling of the folder for every part of
Forge that reads or writes there (audit log, raw evidence, results, recordings, the end
under way), the id checked first so no id reaches outside ``<storage>/scenarios``."""

from __future__ import annotations

from pathlib import Path

from forge_verify.score import require_scenario_id

SCENARIOS_DIR = "scenarios"


def scenario_dir(storage_root: Path | str, scenario_id: str) -> Path:
    """``<storage_root>/scenarios/<scenario_id>``; ValueError for an id that is not one."""
    return Path(storage_root) / SCENARIOS_DIR / require_scenario_id(scenario_id)
