"""plans.yaml's terminal limits: per plan, defaulted, and refused with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from forge.content import content_path
from forge.plans import PlanError, load_plans

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, **pro: Any) -> Path:
    raw = yaml.safe_load((content_path("plans.yaml")).read_text(encoding="utf-8"))
    for key, value in pro.items():
        if value is None:
            raw["plans"]["PRO"].pop(key, None)
        else:
            raw["plans"]["PRO"][key] = value
    path = tmp_path / "plans.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_shipped_plans_allow_four_terminals_idle_for_fifteen_minutes() -> None:
    for plan in load_plans(content_path("plans.yaml")):
        assert (plan.max_terminals, plan.terminal_idle_seconds) == (4, 900), plan.name


def test_a_plan_without_the_fields_gets_the_defaults(tmp_path: Path) -> None:
    catalog = load_plans(_write(tmp_path, max_terminals=None, terminal_idle_seconds=None))
    pro = catalog.get("PRO")
    assert pro is not None and (pro.max_terminals, pro.terminal_idle_seconds) == (4, 900)


def test_a_plan_can_set_its_own_limits(tmp_path: Path) -> None:
    pro = load_plans(_write(tmp_path, max_terminals=2, terminal_idle_seconds=60)).get("pro")
    assert pro is not None and (pro.max_terminals, pro.terminal_idle_seconds) == (2, 60)


@pytest.mark.parametrize(("field", "value"), [
    ("max_terminals", 0), ("max_terminals", 65), ("max_terminals", "many"),
    ("terminal_idle_seconds", 0), ("terminal_idle_seconds", 86_401),
])
def test_bad_limits_are_refused_naming_plan_and_field(tmp_path: Path, field: str,
                                                      value: Any) -> None:
    with pytest.raises(PlanError, match=rf"^plans\.PRO\.{field}: "):
        load_plans(_write(tmp_path, **{field: value}))
