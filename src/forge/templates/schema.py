"""The Scenario DSL's JSON Schema: generated from the models and shipped as a package file.

Regenerate the shipped file after changing the models with
`forge template schema --write`; a test fails while the two differ.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from forge.templates.dsl_models import ScenarioTemplate

SCHEMA_FILE = "scenario_template.schema.json"
SCHEMA_ID = "https://frostgate.forge/schemas/scenario-template-v1.json"


def generate_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) derived from `ScenarioTemplate`."""
    body = ScenarioTemplate.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **body}


def render_schema() -> str:
    """The schema as the exact text of the shipped file (sorted keys, 2-space indent)."""
    return json.dumps(generate_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def shipped_schema_text() -> str:
    """The schema file shipped inside the package."""
    return resources.files("forge.templates").joinpath(SCHEMA_FILE).read_text("utf-8")


def shipped_schema() -> dict[str, Any]:
    """The shipped schema, parsed."""
    data: dict[str, Any] = json.loads(shipped_schema_text())
    return data
