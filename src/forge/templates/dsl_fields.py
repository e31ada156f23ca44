"""The building blocks every Scenario DSL model shares: the frozen base model and field types.

`DslModel` is frozen and forbids unknown keys; `Ident`, `Argv` and `FrozenStrMap` are the
constrained field types used across hosts, checks and the document itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from forge.templates import dsl_limits as L


class DslModel(BaseModel):
    """Base of every DSL model: frozen, no unknown keys, fields by name or alias."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _freeze_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


FrozenStrMap = Annotated[
    Mapping[Annotated[str, Field(pattern=L.ENV_NAME_PATTERN)], str],
    AfterValidator(_freeze_mapping),
    PlainSerializer(lambda m: dict(m), return_type=dict[str, str]),
]
Ident = Annotated[str, Field(pattern=L.IDENT_PATTERN)]
Argv = Annotated[
    tuple[Annotated[str, Field(min_length=1, max_length=L.MAX_ARG_CHARS)], ...],
    Field(
        min_length=1,
        max_length=L.MAX_ARGV,
        description="argv list, executed without a shell; use [\"/bin/sh\", \"-c\", …] for one.",
    ),
]
