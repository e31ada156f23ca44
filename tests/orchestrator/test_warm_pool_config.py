"""FORGE_WARM_POOL: parsed and refused with a clear message; the orchestrator hands the
runtime each pooled template's shape, and leaves out templates it cannot pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config.settings import ConfigError, load_settings
from forge.config.warm_pool_setting import parse_warm_pool
from forge.runtime.warm import shape_key
from forge.services.orchestrator.warm_pools import pool_specs
from forge.templates.registry import TemplateRegistry

TEMPLATES = Path(__file__).resolve().parents[1] / "fixtures" / "templates"


def test_warm_pool_setting_is_parsed_and_bad_entries_are_named() -> None:
    assert parse_warm_pool("") == {}
    assert parse_warm_pool(" lab-netplus=3, lab-ccna=0 ") == {"lab-netplus": 3, "lab-ccna": 0}
    assert load_settings({"FORGE_WARM_POOL": "lab-netplus=2"}).warm_pool == "lab-netplus=2"
    for bad in ("lab-netplus", "lab-netplus=-1", "lab-netplus=x", "a=1,a=2", "Bad!=1",
                "lab-netplus=1001"):
        with pytest.raises(ConfigError, match="FORGE_WARM_POOL"):
            load_settings({"FORGE_WARM_POOL": bad})


def test_pool_specs_are_template_shapes_without_scenario_values(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = TemplateRegistry.load(TEMPLATES)
    specs = pool_specs(registry, {"lab-netplus": 2, "no-such-template": 1})
    assert list(specs) == ["lab-netplus"]  # the unknown one is left out, with a warning
    assert "no-such-template" in caplog.text
    spec, size = specs["lab-netplus"]
    assert size == 2 and [h.name for h in spec.hosts] == ["learner", "router", "target"]
    again = pool_specs(registry, {"lab-netplus": 2})["lab-netplus"][0]
    assert shape_key(spec) == shape_key(again)  # variables never change the shape


def test_an_unusable_runtime_with_pools_configured_still_lets_the_node_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """FORGE_WARM_POOL set on a node whose runtime fails its checks (here: no cgroup
    controllers where it looks): before, the runtime's RuntimeUnavailable escaped the
    orchestrator's start and the service died; without pools the same node starts and
    /readyz names the problem. Now the pools are not started, with a warning saying why."""
    import asyncio
    import logging
    import types
    from concurrent.futures import ThreadPoolExecutor

    from forge.runtime.local import LocalRuntime
    from forge.runtime.local.cgroups import Cgroups
    from forge.services.orchestrator.warm_pools import start_warm_pools

    bogus = tmp_path / "cgroup"
    bogus.mkdir()
    rt = LocalRuntime(str(tmp_path / "state"), prefix="wu",
                      cgroups=Cgroups(1, str(bogus)))
    executor = ThreadPoolExecutor(1)

    async def blocking(fn: object, *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)  # type: ignore[arg-type]

    node = types.SimpleNamespace(  # the orchestrator state's parts start_warm_pools reads
        settings=types.SimpleNamespace(warm_pool="lab-netplus=2",
                                       warm_pool_min_available_mb=512),
        registry=TemplateRegistry.load(TEMPLATES), runtime=rt, blocking=blocking)
    caplog.set_level(logging.WARNING, logger="forge.orchestrator")
    try:
        assert asyncio.run(start_warm_pools(node)) == {}  # type: ignore[arg-type]
        assert any("warm pools not started" in r.getMessage() for r in caplog.records)
        assert rt.warm_pool is None or not rt.warm_pool.status()
    finally:
        executor.shutdown()
        rt.close()
