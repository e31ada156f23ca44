"""Catalog entry (title, summary, difficulty, minutes, objectives) and `access: learner`:
bad values are refused with the field named; shipped labs carry a full catalog entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from forge.templates.registry import TemplateRegistry

Doc = dict[str, Any]
Check = Callable[[Doc], list[str]]


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("title", "", "metadata.title: String should have at least 3 characters"),
    ("title", "two\nlines", "metadata.title: String should match pattern"),
    ("summary", "First paragraph here.\n\nSecond paragraph here.",
     "metadata.summary: must be one paragraph (no blank line)"),
    ("summary", "x" * 601, "metadata.summary: String should have at most 600 characters"),
    ("difficulty", "expert",
     "metadata.difficulty: Input should be 'beginner', 'intermediate' or 'advanced'"),
    ("estimated_minutes", 0, "metadata.estimated_minutes: Input should be greater than or "
                             "equal to 5"),
    ("estimated_minutes", 100000, "metadata.estimated_minutes: Input should be less than or "
                                  "equal to 480"),
    ("objectives", [], "metadata.objectives: Tuple should have at least 1 item"),
    ("objectives", [f"objective {i}" for i in range(9)],
     "metadata.objectives: Tuple should have at most 8 items"),
    ("objectives", ["ok objective", "x" * 141],
     "metadata.objectives[1]: String should have at most 140 characters"),
])
def test_bad_catalog_field_is_named(good_doc: Doc, problems_of: Check, field: str,
                                    value: Any, expected: str) -> None:
    good_doc["metadata"][field] = value
    found = problems_of(good_doc)
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize("field", ["title", "summary", "difficulty", "estimated_minutes",
                                   "objectives"])
def test_missing_catalog_field_is_named(good_doc: Doc, problems_of: Check, field: str) -> None:
    del good_doc["metadata"][field]
    assert problems_of(good_doc) == [f"metadata.{field}: Field required"]


def test_access_values(good_doc: Doc, problems_of: Check) -> None:
    hosts = good_doc["spec"]["assets"]["containers"]
    hosts[1]["access"] = "root"
    found = problems_of(good_doc)
    assert len(found) == 1 and found[0].startswith(
        "spec.assets.containers[1].access: Input should be 'none' or 'learner'"), found
    hosts[1]["access"] = "learner"
    assert problems_of(good_doc) == []


def test_a_lab_without_a_learner_host_is_refused(good_doc: Doc, problems_of: Check) -> None:
    for host in good_doc["spec"]["assets"]["containers"]:
        host.pop("access", None)  # the default is no terminal at all
    assert problems_of(good_doc) == [
        'spec.assets.containers: no host has "access: learner": the learner could open no '
        "terminal (mark the learner's host(s))"]


def test_shipped_labs_carry_a_catalog_entry_and_learner_hosts() -> None:
    registry = TemplateRegistry.load()
    hosts = {}
    for loaded in registry:
        meta = loaded.template.metadata
        assert len(meta.title) >= 10 and len(meta.summary) >= 100, loaded.name
        assert 3 <= len(meta.objectives) <= 8, loaded.name
        hosts[loaded.name] = loaded.template.learner_hosts
    assert all(hosts.values())  # every shipped lab has a learner host
    assert {k: hosts[k] for k in ("netplus", "ccna", "cissp")} == {
        "netplus": ("learner",), "ccna": ("learner", "r2"), "cissp": ("learner",)}
