"""The configured runtime engine (`make_runtime`, as the orchestrator builds it) of a test's
own: one place for the settings → factory → clean-up that labs on a real engine need."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from forge.config.settings import Settings, load_settings
from forge.runtime import Runtime
from forge.runtime.factory import make_runtime


def runtime_env(storage_root: Path, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a dev local engine under `storage_root` with runtime prefix
    `prefix`, on the machine's image cache (built once, shared by every test), plus `extra`
    variables: what `forge` commands run on, and `runtime_settings` reads."""
    return {"FORGE_ENV": "dev", "STORAGE_ROOT": str(storage_root),
            "FORGE_RUNTIME_PREFIX": prefix, "FORGE_RUNTIME_ENGINE": "local",
            "FORGE_IMAGE_CACHE": str(load_settings().image_cache), **extra}


def runtime_settings(storage_root: Path, prefix: str, **extra: str) -> Settings:
    """The settings of `runtime_env`."""
    return load_settings(runtime_env(storage_root, prefix, **extra))


@contextmanager
def runtime_of(settings: Settings) -> Iterator[Runtime]:
    """`make_runtime(settings)`; every lab it still holds is destroyed and it is closed
    afterwards, also when the test failed midway (no namespace outlives the test)."""
    runtime = make_runtime(settings)
    try:
        yield runtime
    finally:
        try:
            for info in runtime.list():
                runtime.destroy(info.lab_id)
        finally:
            runtime.close()


@contextmanager
def configured_runtime(storage_root: Path, prefix: str, **extra: str) -> Iterator[Runtime]:
    """`runtime_of` the `runtime_settings`; its state directory (``<root>/runtime``: lab
    disks, overlays) is removed afterwards, so a test's disk use does not outlive it."""
    try:
        with runtime_of(runtime_settings(storage_root, prefix, **extra)) as runtime:
            yield runtime
    finally:
        shutil.rmtree(storage_root / "runtime", ignore_errors=True)
