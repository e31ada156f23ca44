"""Build the configured runtime engine, so callers never name an engine class.

`FORGE_RUNTIME_ENGINE` picks an entry of the engine registry
(`forge.config.runtime_engines.ENGINES`, re-exported here); the engine's package is
imported only when it is built, so `forge` starts fast and an engine's dependencies are
needed only where it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from forge.config.runtime_engines import ENGINES, engine_problem
from forge.config.settings import ConfigError
from forge.runtime.base import Runtime

if TYPE_CHECKING:
    from forge.config.settings import Settings

__all__ = ["ENGINES", "make_runtime"]


def make_runtime(settings: Settings) -> Runtime:
    """The engine `settings.runtime_engine` names, built from `settings`.

    An engine missing from the registry (settings built around validation) is a
    ConfigError naming `FORGE_RUNTIME_ENGINE` and the choices, like `load_settings` gives.
    """
    entry = ENGINES.get(settings.runtime_engine)
    if entry is None:
        raise ConfigError(settings.env.value, [engine_problem()])
    module_name, _, attr = entry.partition(":")
    build: Callable[[Settings], Runtime] = getattr(importlib.import_module(module_name), attr)
    runtime = build(settings)
    if not isinstance(runtime, Runtime):
        raise TypeError(f"engine {settings.runtime_engine!r} did not build a Runtime")
    return runtime
