"""The default lab image, built once per test session for the tests that launch labs.

A lab host that names no image runs on ``base`` (never the machine's userland), so every
test that launches a lab (they are all marked ``root``) needs it built. The build goes to
the machine-wide cache (FORGE_IMAGE_CACHE, default /var/cache/forge/images): about 40 s
the first time on a machine, instant after (every checkout and CI run reuses it).
"""

from __future__ import annotations

import functools

from forge.config.settings import load_settings
from forge.images import ImageCache, load_definitions
from forge.images.build import build_image
from forge.images.definitions import DEFAULT_IMAGE


def ensure_default_image() -> str:
    """Build (or find) the default image in the configured cache; its root filesystem.
    A failed build fails every later caller at once, with the same error."""
    outcome = _build_default()
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@functools.cache
def _build_default() -> str | Exception:
    settings = load_settings()
    definition = load_definitions(settings.images_dir)[DEFAULT_IMAGE]
    try:
        return str(build_image(definition, ImageCache(settings.image_cache)).entry.rootfs)
    except Exception as exc:  # handed to every caller
        return exc
