"""Which lab a spawn request starts, and whether the caller's plan may start it.

Shared by POST /v1/spawn and the learner page's Start buttons, so both refuse the same
requests with the same codes before anything is reserved (no quota slot, rate count or
idempotency record is taken by a refused request).
"""

from __future__ import annotations

from forge.entitlements.resolve import Entitlement
from forge.errors import ForgeError
from forge.identity.caller import Caller
from forge.services.spawn.spawning import audit_decision
from forge.services.spawn.state import SpawnState
from forge.templates.dsl_limits import NAME_PATTERN

LAB_PATTERN = NAME_PATTERN  # a template name: lower-case letters, digits and -


def choose_lab(state: SpawnState, track: str, lab: str | None) -> str:
    """The template to start: `lab` if it is one of the track's labs, else the track's
    default lab when `lab` is not given. 400 `unknown_track` / `unknown_lab` otherwise."""
    if track not in state.known_tracks:
        allowed = list(state.known_tracks)
        raise ForgeError("unknown_track", 400, f"track: unknown track; allowed: "
                         f"{', '.join(allowed)}", [{"field": "track", "allowed": allowed}])
    if lab is None:
        return state.track_templates[track]
    labs = state.track_labs.get(track, ())
    if lab not in labs:
        raise ForgeError("unknown_lab", 400,
                         f"lab: not a lab of track {track}; its labs: {', '.join(labs)}",
                         [{"field": "lab", "track": track, "allowed": list(labs)}])
    return lab


async def check_plan(state: SpawnState, caller: Caller, ent: Entitlement, track: str,
                     template: str) -> None:
    """403 unless the plan includes the track and the lab's tier (the training gate would
    refuse the launch later; refusing here costs the learner nothing). Receipt-based
    refusals are recorded in the tenant's billing ledger, as before."""
    plan = ent.plan
    if track not in plan.tracks:
        await audit_decision(state, caller, ent, "spawn_denied",
                             {"reason": "track_not_in_plan", "track": track})
        raise ForgeError("track_not_in_plan", 403,
                         f"track: plan {plan.name} allows {', '.join(plan.tracks)}",
                         [{"field": "track", "plan": plan.name}])
    tier = state.templates[template].entry.tier
    if tier not in plan.tiers:
        await audit_decision(state, caller, ent, "spawn_denied",
                             {"reason": "tier_not_in_plan", "track": track, "lab": template,
                              "tier": tier})
        raise ForgeError("tier_not_in_plan", 403,
                         f"lab: {template} is of tier {tier}; plan {plan.name} allows tiers "
                         f"{', '.join(plan.tiers)}",
                         [{"field": "lab", "plan": plan.name, "tier": tier,
                           "unlocked_by": unlocking_plans(state, track, tier)}])


def unlocking_plans(state: SpawnState, track: str, tier: str) -> list[str]:
    """The plans whose track and tier lists include this lab's, in catalog order."""
    return list(state.catalog.including(track, tier))
