"""Input documents for the policy packages, built in one place so every caller agrees.

`build_training_input` serves both `forge.training` and `forge.capabilities`;
`build_spawn_input` serves `forge.spawn`. The shapes are documented at the top of each
policies/*.rego file and mirrored here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forge.templates.dsl_models import ScenarioTemplate

TRAINING_PACKAGES = ("forge.training", "forge.capabilities")


def build_training_input(
    template: ScenarioTemplate,
    *,
    plan_name: str,
    plan_tracks: Sequence[str],
    requested_track: str,
    requested_template: str | None = None,
    template_sha256: str = "",
) -> dict[str, Any]:
    """Input for the training and capabilities gates.

    `plan_name`/`plan_tracks` come from the verified ET; `requested_track` and
    `requested_template` from the verified SAT (the template defaults to the template's
    own name). `template_sha256` is the registry hash, carried for the audit record.
    """
    spec = template.spec
    return {
        "template": {
            "name": template.name,
            "sha256": template_sha256,
            "track": template.track,
            "tier": template.tier,
            "limits": spec.limits.model_dump(mode="json"),
            "network": {
                "egress": spec.network.egress,
                "allowlist_profile": spec.network.allowlist_profile,
            },
            "containers": [
                {
                    "name": c.name,
                    "image": c.image,
                    "read_only": c.read_only,
                    "router": c.router,
                    "capabilities": list(c.capabilities),
                }
                for c in spec.assets.containers
            ],
        },
        "request": {
            "track": requested_track,
            "template": requested_template if requested_template is not None else template.name,
        },
        "plan": {"name": plan_name, "tracks": list(plan_tracks)},
    }


def build_spawn_input(
    *,
    request_id: str,
    track: str,
    subject: str,
    tenant: str,
    plan_name: str,
    plan_tracks: Sequence[str],
    concurrent_limit: int,
    concurrent_used: int,
    rate_limit_per_minute: int,
    rate_used: int,
) -> dict[str, Any]:
    """Input for the spawn gate; `*_used` count what is already in use, not this request."""
    return {
        "request": {"request_id": request_id, "track": track},
        "subject": subject,
        "tenant": tenant,
        "plan": {"name": plan_name, "tracks": list(plan_tracks)},
        "quota": {
            "concurrent": {"limit": concurrent_limit, "used": concurrent_used},
            "rate": {"limit_per_minute": rate_limit_per_minute, "used": rate_used},
        },
    }


ASSIGNMENT_PACKAGE = "forge.assignment"


def build_assignment_input(action: str, assignment: dict[str, Any] | None) -> dict[str, Any]:
    """Input for the assignment gate (`forge.assignment`, part of the spawn gate): `action`
    is "spawn" or "reveal_hint"; `assignment` the governing assignment's window, attempts and
    hints (forge.classroom), or None when the lab is assigned to none of the learner's
    cohorts."""
    doc: dict[str, Any] = {"action": action}
    if assignment is not None:
        doc["assignment"] = assignment
    return doc
