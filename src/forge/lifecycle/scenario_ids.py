"""The public id of a scenario, ``scn-`` + 16 lowercase hex digits, checked before any
lookup: a malformed one is a 422 naming ``scenario_id`` on every route of every service
(as a malformed cohort or assignment id is), never a lookup of a path or row."""

from __future__ import annotations

from typing import TypeGuard

from forge.errors import invalid_field
from forge_verify.score import SCENARIO_ID_RE


def is_scenario_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a well-formed scenario id (a trailing newline is not)."""
    return isinstance(value, str) and SCENARIO_ID_RE.fullmatch(value) is not None


def check_scenario_id(value: object) -> str:
    """``value`` if it is a well-formed scenario id, else 422 naming ``scenario_id``."""
    if not is_scenario_id(value):
        raise invalid_field("scenario_id", "expected scn-<16 lowercase hex digits>")
    return value
