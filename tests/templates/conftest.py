"""Fixtures for template tests: the known-good fixture document and a mutator."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def good_doc() -> dict[str, Any]:
    """A fresh copy of fixtures/good.yaml as a plain document."""
    data: dict[str, Any] = yaml.safe_load((FIXTURES / "good.yaml").read_text())
    return copy.deepcopy(data)


@pytest.fixture
def problems_of() -> Callable[[dict[str, Any]], list[str]]:
    """Validate a document and return its problems rendered as `path: message`."""
    from forge.templates import validate_document

    def run(doc: dict[str, Any]) -> list[str]:
        _, problems = validate_document(doc)
        return [str(p) for p in problems]

    return run
