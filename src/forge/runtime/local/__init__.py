"""The local engine: labs from network namespaces, bubblewrap and cgroups (needs root)."""

from forge.runtime.local.egress import AllowRule, EgressProfile
from forge.runtime.local.runtime import LocalRuntime

__all__ = ["AllowRule", "EgressProfile", "LocalRuntime"]
