"""Scenario templates: the DSL models, its JSON Schema, validation, variables, registry."""

from forge.templates.dsl_models import ScenarioTemplate
from forge.templates.problems import (
    Problem,
    TemplateError,
    UnknownTemplate,
    UnreadableTemplate,
)
from forge.templates.registry import TemplateRegistry, default_template_dir
from forge.templates.schema import generate_schema, shipped_schema
from forge.templates.validate import (
    LoadedTemplate,
    load_template_file,
    parse_template,
    validate_document,
)
from forge.templates.variables import derive_values, generate_values, render

__all__ = [
    "LoadedTemplate",
    "Problem",
    "ScenarioTemplate",
    "TemplateError",
    "TemplateRegistry",
    "UnknownTemplate",
    "UnreadableTemplate",
    "default_template_dir",
    "derive_values",
    "generate_schema",
    "generate_values",
    "load_template_file",
    "parse_template",
    "render",
    "shipped_schema",
    "validate_document",
]
