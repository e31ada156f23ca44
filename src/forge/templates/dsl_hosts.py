"""The Scenario DSL's lab: its hosts, their limits, subnets, routes and seeded files.

Shape, types and per-field bounds only; cross-references (a host's subnet exists, an
address lies in its subnet, unique names) are checked by `forge.templates.semantic`.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from forge.templates import dsl_limits as L
from forge.templates.dsl_fields import Argv, DslModel, FrozenStrMap, Ident

# A ready port as text: a number, or one `{{ vars.NAME }}` (a number once rendered).
READY_PORT_RE = re.compile(r"[0-9]{1,5}|\{\{ *vars\.[A-Za-z_][A-Za-z0-9_]* *\}\}")


def _ready_port(value: object) -> object:
    """A TCP port number, or the text of one or of an int variable's reference (the
    variable's kind and range are checked by `semantic`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 65535:
            raise ValueError(f"port {value} is not in 1..65535")
        return value
    if isinstance(value, str) and READY_PORT_RE.fullmatch(value):
        return value
    raise ValueError('must be a TCP port number (1..65535) or "{{ vars.NAME }}" naming an '
                     "int variable")


ReadyPort = Annotated[int | str, BeforeValidator(_ready_port)]


class Limits(DslModel):
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


class Subnet(DslModel):
    """One lab subnet (a bridge in the lab's switch namespace; a direct link between its two
    hosts when it joins exactly two)."""

    name: Ident
    cidr: Annotated[str, Field(description=(
        "Private IPv4 network in CIDR form, /24 to /29, e.g. 10.10.1.0/24."))]


class Network(DslModel):
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


class Attachment(DslModel):
    """A host's interface on a subnet, with an optional fixed IPv4 address."""

    subnet: Ident
    address: str | None = None


class Route(DslModel):
    """A static route set on a host at launch: `to` (CIDR or "default") via a gateway."""

    to: Annotated[str, Field(description='Destination CIDR or "default".')]
    via: Annotated[str, Field(description="Gateway IPv4 address on an attached subnet.")]


class SeedFile(DslModel):
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


class Container(DslModel):
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
    ready_ports: Annotated[
        tuple[ReadyPort, ...],
        Field(max_length=L.MAX_READY_PORTS,
              description="TCP ports the host's command listens on once the lab is usable: "
                          'each a number or an int variable ("{{ vars.NAME }}"). The lab '
                          "stays launching until each accepts a connection in the host."),
    ] = ()
    files: tuple[SeedFile, ...] = ()
    grading_address: Annotated[
        bool,
        Field(description="When the lab is sealed for grading, the runtime gives each of "
                          "the host's lab interfaces one more address (a secondary), drawn "
                          "at random from its subnet's free addresses, and a fresh random "
                          "MAC: a source no learner saw before grading, for checks to probe "
                          "from (`ip -4 -o addr show secondary`), so a firewall must express "
                          "a policy, not list the probing hosts' addresses or MACs."),
    ] = False
    grading_identities: Annotated[
        tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,7}$")], ...],
        Field(max_length=8,
              description="Names of probe identities (one per criterion, e.g. "
                          '["web", "ssh"]): when the lab is sealed for grading, the runtime '
                          "gives the host, per name and lab interface ethN, a sub-interface "
                          "gN-NAME with a random MAC and a random free address of the subnet, "
                          "routed out through it, so the checks of one criterion probe from "
                          "a source no other criterion's probes used (`nc -s` its address) "
                          "and a firewall cannot remember the grader's earlier probes."),
    ] = ()
    access: Annotated[
        Literal["none", "learner"],
        Field(description='"learner": the learner may open a terminal on this host (one tab '
                          'per such host); "none" (default): only the grader reaches it.'),
    ] = "none"


class Assets(DslModel):
    """The lab's hosts."""

    containers: Annotated[tuple[Container, ...], Field(min_length=1, max_length=L.MAX_CONTAINERS)]
