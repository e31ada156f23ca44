"""Sandbox runtime: the engine-neutral interface and the engines that implement it."""

from forge.runtime.base import (
    ExecResult,
    HostSpec,
    LabExists,
    LabInfo,
    LabNotFound,
    LabSealed,
    LabSpec,
    Limits,
    Runtime,
    RuntimeFault,
    RuntimeUnavailable,
    SpecError,
    SubnetSpec,
    TtySession,
)
from forge.runtime.plan import validate_lab_id

__all__ = [
    "ExecResult",
    "HostSpec",
    "LabExists",
    "LabInfo",
    "LabNotFound",
    "LabSealed",
    "LabSpec",
    "Limits",
    "Runtime",
    "RuntimeFault",
    "RuntimeUnavailable",
    "SpecError",
    "SubnetSpec",
    "TtySession",
    "validate_lab_id",
]
