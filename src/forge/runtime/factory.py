"""Build the configured runtime engine, so callers never name an engine class."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge.config.settings import Settings
    from forge.runtime.local import LocalRuntime


def make_runtime(settings: Settings) -> LocalRuntime:
    """The local engine under ``<STORAGE_ROOT>/runtime`` with the configured prefix and
    lab uid range (``FORGE_LAB_UID_RANGE``)."""
    from forge.faults import crash_point
    from forge.runtime.local import LocalRuntime  # imported lazily: keeps `forge` fast
    from forge.runtime.local.uids import parse_range

    return LocalRuntime(str(settings.storage_root / "runtime"), settings.runtime_prefix,
                        uid_range=parse_range(settings.lab_uid_range),
                        fault_hook=lambda stage: crash_point(f"orchestrator.create.{stage}"))
