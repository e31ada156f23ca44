"""Plans: tracks, tiers, rate and concurrency limits, lab lifetime and retention per plan."""

from forge.plans.catalog import (
    DEFAULT_MAX_TERMINALS,
    DEFAULT_TERMINAL_IDLE_SECONDS,
    Plan,
    PlanCatalog,
    PlanError,
    load_plans,
)

__all__ = ["DEFAULT_MAX_TERMINALS", "DEFAULT_TERMINAL_IDLE_SECONDS", "Plan", "PlanCatalog",
           "PlanError", "load_plans"]
