"""Pydantic models of the Scenario DSL (`apiVersion: frostgate.forge/v1`; see docs/labs.md).

The models are the single source of the JSON Schema shipped with the package. They check
shape, types and per-field bounds; cross-field rules (references between containers,
subnets and checks) live in `forge.templates.semantic`. Every model is frozen and uses
tuples and read-only mappings, so a loaded template cannot be changed in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from forge.templates import dsl_limits as L


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


Difficulty = Literal["beginner", "intermediate", "advanced"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _one_paragraph(value: str) -> str:
    """A summary is one paragraph: no blank line, no leading or trailing space."""
    if value != value.strip():
        raise ValueError("must not start or end with white space")
    if "\n\n" in value.replace("\r", ""):
        raise ValueError("must be one paragraph (no blank line)")
    return value


class Metadata(_Model):
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


class Limits(_Model):
    """Resource limits applied by the runtime to each host of the lab."""

    cpu: Annotated[float, Field(gt=0, le=L.MAX_CPU, description="CPU cores per host.")]
    memory_mb: Annotated[int, Field(ge=16, le=L.MAX_MEMORY_MB)]
    pids: Annotated[int, Field(ge=8, le=L.MAX_PIDS)]
    attacker_max_exploits: Annotated[int, Field(ge=0, le=L.MAX_ATTACKER_EXPLOITS)] = 0
    timeout_minutes: Annotated[int, Field(ge=1, le=L.MAX_TIMEOUT_MINUTES)]
    disk_mb: Annotated[
        int,
        Field(ge=1, le=L.MAX_DISK_MB,
              description="MiB for every writable path of the lab together (home, "
                          "workspace, srv, tmp); counts against memory too."),
    ] = L.DEFAULT_DISK_MB


class Subnet(_Model):
    """One lab subnet (a bridge in the lab's switch namespace)."""

    name: Ident
    cidr: Annotated[str, Field(description="IPv4 network in CIDR form, e.g. 10.10.1.0/24.")]


class Network(_Model):
    """Lab networking: subnets and the egress mode."""

    subnets: Annotated[tuple[Subnet, ...], Field(min_length=1, max_length=L.MAX_SUBNETS)]
    egress: Literal["deny", "allowlist"] = "deny"
    allowlist_profile: Annotated[
        str | None,
        Field(pattern=L.IDENT_PATTERN, description="Required when egress is allowlist."),
    ] = None

    @model_validator(mode="after")
    def _profile_matches_egress(self) -> Network:
        if self.egress == "allowlist" and self.allowlist_profile is None:
            raise ValueError("egress 'allowlist' requires allowlist_profile")
        if self.egress == "deny" and self.allowlist_profile is not None:
            raise ValueError("allowlist_profile is only valid with egress 'allowlist'")
        return self


class Attachment(_Model):
    """A host's interface on a subnet, with an optional fixed IPv4 address."""

    subnet: Ident
    address: str | None = None


class Route(_Model):
    """A static route set on a host at launch: `to` (CIDR or "default") via a gateway."""

    to: Annotated[str, Field(description='Destination CIDR or "default".')]
    via: Annotated[str, Field(description="Gateway IPv4 address on an attached subnet.")]


class SeedFile(_Model):
    """A file written into a host before its command starts."""

    path: Annotated[str, Field(min_length=2, max_length=255)]
    content: Annotated[str, Field(max_length=L.MAX_FILE_BYTES)]
    mode: Annotated[
        int | None,
        Field(ge=0, le=0o777, description="Permission bits (no setuid/setgid/sticky). "
                                          "Default: 0755 for a #! script, else 0644; a "
                                          "mode given is kept as given."),
    ] = None
    owner: Annotated[
        Literal["root", "learner"] | None,
        Field(description='"learner": owned by the lab\'s unprivileged user, who may then '
                          'edit it (e.g. an /etc config on an image host); "root": read-only '
                          "for the learner. Default: learner under /home, /workspace and "
                          "/srv, root elsewhere."),
    ] = None


class Container(_Model):
    """One lab host."""

    name: Ident
    image: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$",
            description='Image the host runs on (default "base", the minimal lab userland); '
                        '"host" is the machine\'s userland read-only, for test fixtures only.',
        ),
    ] = L.DEFAULT_IMAGE
    read_only: bool = True
    networks: Annotated[tuple[Attachment, ...], Field(min_length=1)]
    routes: tuple[Route, ...] = ()
    router: Annotated[bool, Field(description="Forward IPv4 between its subnets.")] = False
    environment: FrozenStrMap = Field(default_factory=lambda: MappingProxyType({}))
    capabilities: Annotated[
        tuple[Annotated[str, Field(pattern=r"^[A-Z][A-Z_]{1,31}$")], ...],
        Field(description='Linux capability names without the CAP_ prefix, e.g. "NET_ADMIN".'),
    ] = ()
    command: Argv | None = None
    files: tuple[SeedFile, ...] = ()
    access: Annotated[
        Literal["none", "learner"],
        Field(description='"learner": the learner may open a terminal on this host (one tab '
                          'per such host); "none" (default): only the grader reaches it.'),
    ] = "none"


class Expect(_Model):
    """What a check's result must show; at least one expectation is required."""

    exit_code: Annotated[int | None, Field(ge=0, le=255)] = None
    stdout_contains: Annotated[str | None, Field(min_length=1)] = None
    stdout_regex: Annotated[str | None, Field(min_length=1)] = None
    stderr_contains: Annotated[str | None, Field(min_length=1)] = None

    def is_empty(self) -> bool:
        """True when no expectation is named (such a check could never fail)."""
        return all(
            v is None
            for v in (self.exit_code, self.stdout_contains, self.stdout_regex, self.stderr_contains)
        )


class Check(_Model):
    """A command run inside a lab host at grading time."""

    container: Ident
    command: Argv
    stdin: Annotated[
        str | None,
        Field(max_length=L.MAX_CHECK_STDIN,
              description="Text fed to the check on stdin: where expected values go "
                          "(a command's argv is readable by other processes)."),
    ] = None
    live: Annotated[
        bool,
        Field(description="Run before the lab is sealed, while the learner's own "
                          "processes still run (e.g. a service the learner started), "
                          "from another host over the lab network."),
    ] = False
    timeout_seconds: Annotated[int, Field(ge=1, le=L.MAX_CHECK_TIMEOUT_SECONDS)] = 10
    expect: Expect


class Criterion(_Model):
    """A graded success criterion; it passes when all of its checks pass."""

    id: Ident
    description: Annotated[str, Field(min_length=1, max_length=2000)]
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    checks: Annotated[tuple[Check, ...], Field(min_length=1, max_length=32)]


class Hint(_Model):
    """A hint the learner may reveal, in order; ``criterion`` names the task it helps with."""

    text: Annotated[str, Field(min_length=3, max_length=L.MAX_HINT_CHARS,
                               description="Markdown shown when the learner reveals it.")]
    criterion: Annotated[
        Ident | None,
        Field(description="The success criterion this hint is for (none: the whole lab)."),
    ] = None
    cost: Annotated[
        float,
        Field(ge=0, le=L.MAX_HINT_COST, allow_inf_nan=False, strict=True,
              description="What revealing it costs: a fraction of the lab's total score "
                          "(0.1 = 10 percentage points), subtracted from the final score "
                          "(never below 0). 0 (default) to 0.5."),
    ] = 0.0


class Variable(_Model):
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


class Assets(_Model):
    """The lab's hosts."""

    containers: Annotated[tuple[Container, ...], Field(min_length=1, max_length=L.MAX_CONTAINERS)]


class Spec(_Model):
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


class ScenarioTemplate(_Model):
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
