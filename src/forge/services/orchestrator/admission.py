"""Admission of a spawn event: verify SAT and ET, their binding, and the event they ride on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forge.bus.contracts import SpawnRequestedV1
from forge.config.settings import Settings
from forge.tokens import ET, SAT, TokenError, check_sat_et_binding, verify_token


class AdmissionRefused(Exception):
    """The event's tokens do not authorize this spawn; `code` is stable for audits."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Admitted:
    """Verified claims of one spawn."""

    sat: dict[str, Any]
    et: dict[str, Any]
    sat_token: str
    et_token: str

    @property
    def scenario_id(self) -> str:
        return str(self.sat["scenario_id"])


def verify_spawn_event(settings: Settings, event: SpawnRequestedV1) -> Admitted:
    """Check signatures (by kid), types, audiences, expiry, SAT↔ET agreement, event binding.

    The event's shape was checked by its contract; this checks what it claims."""
    sat_token, et_token = event.sat, event.et
    try:
        sat = verify_token(settings.sat, SAT, sat_token)
    except TokenError as exc:
        raise AdmissionRefused(f"sat_{exc.code}", f"SAT refused: {exc}") from None
    try:
        et = verify_token(settings.et, ET, et_token)
    except TokenError as exc:
        raise AdmissionRefused(f"et_{exc.code}", f"ET refused: {exc}") from None
    try:
        check_sat_et_binding(sat, et)
    except TokenError as exc:
        raise AdmissionRefused("sat_et_mismatch", f"SAT and ET disagree: {exc}") from None
    bindings = (("scenario_id", event.scenario_id, "scenario_id"),
                ("track", event.track, "track"), ("template_id", event.template_id, "template_id"),
                ("tenant_id", event.tenant_id, "tenant_id"), ("subject", event.subject, "sub"),
                ("plan", event.plan, "plan"))
    for field, value, claim in bindings:
        if value != sat.get(claim):
            raise AdmissionRefused("sat_event_mismatch",
                                   f"SAT is bound to another {field} than the event's")
    return Admitted(sat, et, sat_token, et_token)
