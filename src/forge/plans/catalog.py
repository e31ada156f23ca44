"""Load and validate `plans.yaml`; look plans up by name or alias."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forge.config.trusted_tree import chosen_content
from forge_verify.files import InputRefused, read_bounded_text

_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,31}\Z")
_TRACK = re.compile(r"^[a-z][a-z0-9_-]{1,31}\Z")
DEFAULT_MAX_TERMINALS = 4
DEFAULT_TERMINAL_IDLE_SECONDS = 15 * 60
# The shipped file is 2 KiB: far above any real one, and read before any YAML parsing (a
# FORGE_PLANS_FILE of /dev/zero filled memory, a FIFO hung every start).
MAX_PLANS_BYTES = 1024 * 1024


class PlanError(Exception):
    """plans.yaml is missing or invalid; the message names the plan and field."""


class Plan(BaseModel):
    """One plan's entitlements and limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    aliases: tuple[str, ...] = ()
    tracks: tuple[str, ...] = Field(min_length=1)
    tiers: tuple[str, ...] = Field(min_length=1)
    spawns_per_minute: int = Field(gt=0, le=100_000)
    tenant_spawns_per_minute: int = Field(gt=0, le=1_000_000)
    concurrent: int = Field(gt=0, le=10_000)
    tenant_concurrent: int = Field(gt=0, le=1_000_000)
    max_lab_minutes: int = Field(gt=0, le=7 * 24 * 60)
    retention_days: int = Field(gt=0, le=3650)
    # Browser terminals: live shells at once per lab (terminal sessions, one per host; all
    # tabs and devices together), and how long one may go without input before it closes.
    max_terminals: int = Field(default=DEFAULT_MAX_TERMINALS, gt=0, le=64)
    terminal_idle_seconds: int = Field(default=DEFAULT_TERMINAL_IDLE_SECONDS, ge=1,
                                       le=24 * 60 * 60)
    # What the plans page shows as the price ("EUR 19 / month"); unset: no price is shown.
    price: str | None = Field(default=None, min_length=1, max_length=40)

    @model_validator(mode="after")
    def _check(self) -> Plan:
        if not _NAME.match(self.name):
            raise ValueError("name must be upper-case letters, digits or _")
        bad = [t for t in self.tracks if not _TRACK.match(t)]
        if bad:
            raise ValueError(f"tracks: invalid track names {bad}")
        if self.concurrent > self.tenant_concurrent:
            raise ValueError("concurrent must not exceed tenant_concurrent")
        if self.spawns_per_minute > self.tenant_spawns_per_minute:
            raise ValueError("spawns_per_minute must not exceed tenant_spawns_per_minute")
        return self


class PlanCatalog:
    """All plans, by canonical name and alias (case-insensitive)."""

    def __init__(self, plans: list[Plan]) -> None:
        self._plans = {p.name: p for p in plans}
        self._lookup: dict[str, Plan] = {}
        for plan in plans:
            for key in {k.lower() for k in (plan.name, *plan.aliases)}:
                if key in self._lookup:
                    raise PlanError(f"plan name or alias {key!r} is used by two plans")
                self._lookup[key] = plan

    def get(self, name: str) -> Plan | None:
        """The plan called `name` (or one of its aliases), else None."""
        return self._lookup.get(name.strip().lower()) if isinstance(name, str) else None

    def __iter__(self) -> Iterator[Plan]:
        return iter(self._plans.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._plans)

    @property
    def tracks(self) -> tuple[str, ...]:
        """Every track some plan offers, sorted."""
        return tuple(sorted({t for p in self._plans.values() for t in p.tracks}))

    def including(self, track: str, tier: str) -> tuple[str, ...]:
        """The plans whose learners may start a lab of `track` and `tier` (the policies'
        track and tier rules; a lab's limits above a plan's caps are refused at start)."""
        return tuple(p.name for p in self._plans.values()
                     if track in p.tracks and tier in p.tiers)


def load_plans(path: Path) -> PlanCatalog:
    """Read and validate a plans file; raises PlanError naming the plan and field at fault,
    or the file (its owner and mode) when another local user owns or may write it or a
    folder above: their plans would set every tenant's limits."""
    chosen = chosen_content(path)
    if chosen is not None:
        raise PlanError(f"plans file {chosen}")
    try:
        raw = yaml.safe_load(read_bounded_text(path, MAX_PLANS_BYTES))
    except InputRefused as exc:  # missing, not a regular file, too large, not UTF-8
        raise PlanError(f"cannot read plans file {path}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise PlanError(f"plans file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("plans"), dict) or not raw["plans"]:
        raise PlanError(f"plans file {path} must have a non-empty 'plans' mapping")
    plans: list[Plan] = []
    for name, body in raw["plans"].items():
        if not isinstance(body, dict):
            raise PlanError(f"plans.{name}: must be a mapping")
        try:
            plans.append(Plan(name=str(name), **body))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            where = f"plans.{name}.{field}" if field else f"plans.{name}"
            raise PlanError(f"{where}: {first['msg']}") from exc
    return PlanCatalog(plans)
