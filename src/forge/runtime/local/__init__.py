"""The local engine: labs from network namespaces, bubblewrap and cgroups (needs root)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from forge.runtime.local.egress import AllowRule, EgressProfile
from forge.runtime.local.runtime import LocalRuntime

if TYPE_CHECKING:
    from forge.config.settings import Settings

__all__ = ["AllowRule", "EgressProfile", "LocalRuntime", "build"]


def build(settings: Settings) -> LocalRuntime:
    """The local engine under ``<STORAGE_ROOT>/runtime`` with the configured prefix, lab
    uid range (``FORGE_LAB_UID_RANGE``) and images (``FORGE_IMAGE_DIR`` definitions,
    built in ``FORGE_IMAGE_CACHE``; a host naming no image gets ``base``, never the
    machine's userland) and fresh builds at once (``FORGE_BUILD_SLOTS``, 0: one per
    core, plus one), its machine's neighbour tables sized for ``FORGE_NODE_CAPACITY_LABS``
    labs; the factory's entry for ``local``."""
    from forge.faults import crash_point
    from forge.images import resolve_image
    from forge.images.definitions import DEFAULT_IMAGE
    from forge.runtime.local.uids import parse_range

    def image_root(name: str) -> str:
        """A template's image, looked up at each create (an image built since counts)."""
        return str(resolve_image(name, settings.images_dir, settings.image_cache))

    return LocalRuntime(str(settings.storage_root / "runtime"), settings.runtime_prefix,
                        uid_range=parse_range(settings.lab_uid_range),
                        fault_hook=lambda stage: crash_point(f"orchestrator.create.{stage}"),
                        resolve_image=image_root, default_image=DEFAULT_IMAGE,
                        build_slots=settings.build_slots or None,
                        ready_timeout_s=settings.lab_ready_timeout_s,
                        lab_capacity=settings.node_capacity_labs)
