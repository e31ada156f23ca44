"""Sandbox runtime: the engine-neutral interface and the engines that implement it."""

from forge.runtime.base import (
    BuildsStopped,
    ExecResult,
    HostSpec,
    LabExists,
    LabInfo,
    LabNotFound,
    LabSealed,
    LabSpec,
    Limits,
    NotSupported,
    Runtime,
    RuntimeFault,
    RuntimeUnavailable,
    SpecError,
    SubnetSpec,
    TerminalClosed,
    TtySession,
)
from forge.runtime.plan import validate_lab_id

__all__ = [
    "BuildsStopped",
    "ExecResult",
    "HostSpec",
    "LabExists",
    "LabInfo",
    "LabNotFound",
    "LabSealed",
    "LabSpec",
    "Limits",
    "NotSupported",
    "Runtime",
    "RuntimeFault",
    "RuntimeUnavailable",
    "SpecError",
    "SubnetSpec",
    "TerminalClosed",
    "TtySession",
    "validate_lab_id",
]
