"""Pydantic models of the Scenario DSL (`apiVersion: frostgate.forge/v1`; see docs/labs.md).

The models are the single source of the JSON Schema shipped with the package. They check
shape, types and per-field bounds; cross-field rules (references between containers,
subnets and checks) live in `forge.templates.semantic`. Every model is frozen and uses
tuples and read-only mappings, so a loaded template cannot be changed in place.

This module holds the document (`ScenarioTemplate`, its `Spec`), the catalog `Metadata` and
the per-scenario `Variable`s; the lab's hosts are in `dsl_hosts`, its criteria, checks and
hints in `dsl_grading`, the shared base model and field types in `dsl_fields`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, PlainSerializer, model_validator

from forge.templates import dsl_limits as L
from forge.templates.dsl_fields import DslModel
from forge.templates.dsl_grading import Criterion, Hint
from forge.templates.dsl_hosts import Assets, Limits, Network

Difficulty = Literal["beginner", "intermediate", "advanced"]


def _one_paragraph(value: str) -> str:
    """A summary is one paragraph: no blank line, no leading or trailing space."""
    if value != value.strip():
        raise ValueError("must not start or end with white space")
    if "\n\n" in value.replace("\r", ""):
        raise ValueError("must be one paragraph (no blank line)")
    return value


class Metadata(DslModel):
    """Template identity (registry name, labels) and its catalog entry for learners."""

    name: Annotated[
        str,
        Field(
            pattern=L.NAME_PATTERN,
            description="Registry key; lowercase letters, digits and '-'; equals the file stem.",
        ),
    ]
    labels: Annotated[
        tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,31}:[A-Za-z0-9_.-]{1,63}$")], ...],
        Field(
            min_length=2,
            description=(
                'Labels as "key:value" strings. Exactly one "class:<track>" (the training '
                'track, e.g. "class:netplus") and one "tier:<tier>" (foundation, '
                'intermediate or advanced) are required; other keys are free-form.'
            ),
        ),
    ]

    title: Annotated[
        str,
        Field(min_length=3, max_length=L.MAX_TITLE_CHARS, pattern=r"^[^\r\n]+$",
              description="Catalog title shown to learners, one line."),
    ]
    summary: Annotated[
        str,
        Field(min_length=20, max_length=L.MAX_SUMMARY_CHARS,
              description="Catalog summary: one paragraph of plain text (no blank line)."),
        AfterValidator(_one_paragraph),
    ]
    difficulty: Annotated[
        Difficulty,
        Field(description="How hard the lab is for its audience."),
    ]
    estimated_minutes: Annotated[
        int,
        Field(ge=L.MIN_ESTIMATED_MINUTES, le=L.MAX_ESTIMATED_MINUTES,
              description="How long a typical learner takes, in minutes."),
    ]
    objectives: Annotated[
        tuple[Annotated[str, Field(min_length=3, max_length=L.MAX_OBJECTIVE_CHARS,
                                   pattern=r"^[^\r\n]+$")], ...],
        Field(min_length=1, max_length=L.MAX_OBJECTIVES,
              description="What the learner will be able to do: 1-8 short one-line items."),
    ]

    def label(self, key: str) -> str | None:
        """The value of the first label with this key, or None."""
        for item in self.labels:
            k, _, v = item.partition(":")
            if k == key:
                return v
        return None


class Variable(DslModel):
    """A per-scenario random value, substituted as `{{ vars.NAME }}`."""

    kind: Literal["token", "hex", "int"]
    length: Annotated[int | None, Field(ge=4, le=64, description="token/hex length.")] = None
    min: int | None = None
    max: int | None = None

    @model_validator(mode="after")
    def _shape(self) -> Variable:
        if self.kind == "int":
            if self.min is None or self.max is None:
                raise ValueError("int variables need min and max")
            if self.min > self.max:
                raise ValueError("min must not exceed max")
            if self.length is not None:
                raise ValueError("length is only valid for token and hex")
        else:
            if self.min is not None or self.max is not None:
                raise ValueError("min/max are only valid for int")
        return self

    @property
    def size(self) -> int:
        """Length of a token/hex value (16 when not given)."""
        return self.length if self.length is not None else 16


def _freeze_variables(value: Mapping[str, Variable]) -> Mapping[str, Variable]:
    return MappingProxyType(dict(value))


def _dump_variables(value: Mapping[str, Variable]) -> dict[str, Any]:
    return {k: v.model_dump(mode="json", exclude_none=True) for k, v in value.items()}


class Spec(DslModel):
    """Everything a lab needs: task text, limits, network, variables, hosts, criteria."""

    description: Annotated[
        str, Field(min_length=1, max_length=20000, description="Learner-facing task, markdown.")
    ]
    limits: Limits
    network: Network
    variables: Annotated[
        Mapping[Annotated[str, Field(pattern=L.VAR_NAME_PATTERN)], Variable],
        AfterValidator(_freeze_variables),
        PlainSerializer(_dump_variables, return_type=dict[str, Any]),
        Field(description="Per-scenario random values, referenced as {{ vars.NAME }}."),
    ] = Field(default_factory=lambda: MappingProxyType({}))
    assets: Assets
    success_criteria: Annotated[
        tuple[Criterion, ...], Field(alias="successCriteria", min_length=1, max_length=64)
    ]
    hints: Annotated[
        tuple[Hint, ...],
        Field(max_length=L.MAX_HINTS,
              description="Hints in the order the learner may reveal them; never answers."),
    ] = ()


class ScenarioTemplate(DslModel):
    """A complete Scenario DSL document."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        title="FrostGate Forge ScenarioTemplate",
        json_schema_extra={
            "description": (
                "Scenario DSL (apiVersion frostgate.forge/v1). Values may reference per-scenario "
                "variables as {{ vars.NAME }} in file contents, commands, environment values "
                "and check expectations. Cross-references (subnets, addresses, routes, check "
                "targets, unique names, seeded file paths, capability names) are checked by "
                "`forge template check` beyond this schema."
            )
        },
    )

    api_version: Literal["frostgate.forge/v1"] = Field(alias="apiVersion")
    kind: Literal["ScenarioTemplate"]
    metadata: Metadata
    spec: Spec

    @property
    def name(self) -> str:
        """The template's registry name."""
        return self.metadata.name

    @property
    def track(self) -> str | None:
        """The `class:` label (training track)."""
        return self.metadata.label("class")

    @property
    def tier(self) -> str | None:
        """The `tier:` label."""
        return self.metadata.label("tier")

    @property
    def learner_hosts(self) -> tuple[str, ...]:
        """Hosts marked `access: learner`, in template order: where terminals may open."""
        return tuple(c.name for c in self.spec.assets.containers if c.access == "learner")

    def to_document(self) -> dict[str, Any]:
        """The template as a plain JSON-compatible document with DSL field names."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
