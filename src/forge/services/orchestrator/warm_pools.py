"""The orchestrator's warm pools: FORGE_WARM_POOL's templates handed to the runtime as lab
shapes at start, torn down at stop. The runtime does the rest (``Runtime.warm``): a spawn
whose lab has a pooled shape claims a pre-built lab in ``create`` and personalises it."""

from __future__ import annotations

import logging

from forge.config.warm_pool_setting import parse_warm_pool
from forge.runtime.base import LabSpec, NotSupported, RuntimeFault
from forge.runtime.warm import poolable, shape_key
from forge.services.orchestrator.labspec import lab_spec
from forge.services.orchestrator.state import OrchestratorState
from forge.templates.problems import UnknownTemplate
from forge.templates.registry import TemplateRegistry
from forge.templates.variables import generate_values, render

log = logging.getLogger("forge.orchestrator.warm_pools")
SHAPE_ID = "wp-shape"


def pool_specs(registry: TemplateRegistry, pools: dict[str, int]) -> dict[str, tuple[LabSpec, int]]:
    """Each pooled template as a lab spec and its size. A template whose variables change
    its networks or hosts (two renders give two shapes) cannot be pooled: it is left out
    with a warning, and its labs are built fresh as before."""
    specs: dict[str, tuple[LabSpec, int]] = {}
    for name, size in pools.items():
        try:
            template = registry.get(name).template
        except UnknownTemplate:
            log.warning("FORGE_WARM_POOL names template %r, which is not loaded; no pool", name)
            continue
        first = lab_spec(SHAPE_ID, render(template, generate_values(template)), template)
        second = lab_spec(SHAPE_ID, render(template, generate_values(template)), template)
        reason = poolable(first)
        if reason is None and shape_key(first) != shape_key(second):
            reason = "its variables change its networks or hosts"
        if reason is not None:
            log.warning("template %r is not pooled: %s", name, reason)
            continue
        specs[name] = (first, size)
    return specs


async def start_warm_pools(state: OrchestratorState) -> dict[str, dict[str, int]]:
    """Ask the runtime to keep the configured pools filled (in the background)."""
    pools = parse_warm_pool(state.settings.warm_pool)
    if not pools:
        return {}
    specs = pool_specs(state.registry, pools)
    try:
        status = await state.blocking(lambda: state.runtime.warm(
            specs, min_available_mb=state.settings.warm_pool_min_available_mb))
    except NotSupported as exc:
        log.warning("FORGE_WARM_POOL ignored: %s", exc)
        return {}
    except (RuntimeFault, OSError) as exc:  # e.g. the runtime unusable: /readyz says why
        log.warning("warm pools not started: %s", exc)
        return {}
    log.info("warm pools: %s", status)
    return status


async def stop_warm_pools(state: OrchestratorState) -> None:
    """Destroy every ready pool lab (claimed labs are scenarios' and stay)."""
    if not parse_warm_pool(state.settings.warm_pool):
        return
    try:
        await state.blocking(state.runtime.warm, {})
    except (NotSupported, RuntimeFault, OSError) as exc:
        log.warning("warm pools not torn down: %s", exc)
