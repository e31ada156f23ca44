"""Fixtures for image tests: the shipped ``base`` image, built in the machine-wide cache.

The first run builds it from the Debian mirror (about 30 s); later runs, other checkouts
and CI on the same machine reuse ``/var/cache/forge/images`` (FORGE_IMAGE_CACHE).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.config.settings import load_settings
from forge.images import ImageCache, load_definitions
from forge.images.build import build_image

from ..support.images import ensure_default_image


@pytest.fixture(scope="session")
def image_cache_root() -> Path:
    """The configured machine-wide cache (FORGE_IMAGE_CACHE or its default)."""
    return load_settings().image_cache


@pytest.fixture(scope="session")
def base_rootfs() -> Path:
    """The built ``base`` image's root filesystem (built now if the cache lacks it)."""
    return Path(ensure_default_image())


@pytest.fixture(scope="session")
def ssh_rootfs(image_cache_root: Path) -> Path:
    """The built ``ssh`` image's root filesystem (built now if the cache lacks it)."""
    definition = load_definitions(load_settings().images_dir)["ssh"]
    return build_image(definition, ImageCache(image_cache_root)).entry.rootfs


@pytest.fixture()
def etc_marker() -> Iterator[Path]:
    """A file created in the machine's own /etc for one test (removed after)."""
    path = Path("/etc") / f"forge-image-test-{secrets.token_hex(6)}"
    path.write_text("machine secret\n", encoding="utf-8")
    os.chmod(path, 0o644)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
