"""Plans: tracks, tiers, rate and concurrency limits, lab lifetime and retention per plan."""

from forge.plans.catalog import Plan, PlanCatalog, PlanError, load_plans

__all__ = ["Plan", "PlanCatalog", "PlanError", "load_plans"]
