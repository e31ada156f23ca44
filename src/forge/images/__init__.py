"""Lab images: root filesystems built from Debian packages.

An image is defined by a small YAML file (``definitions``), built with mmdebstrap
(``build``) into a content-addressed, machine-wide cache (``cache``), and resolved by name
for the runtime (``lookup``): a lab host with ``image: NAME`` runs on that tree,
read-only and shared by every lab that uses it.
"""

from __future__ import annotations

from forge.images.cache import CacheEntry, ImageCache
from forge.images.definitions import (
    ImageDefinition,
    ImageDefinitionError,
    load_definition_file,
    load_definitions,
)
from forge.images.lookup import ImageNotBuilt, InvalidImageName, image_key, resolve_image

__all__ = [
    "CacheEntry",
    "ImageCache",
    "ImageDefinition",
    "ImageDefinitionError",
    "ImageNotBuilt",
    "InvalidImageName",
    "image_key",
    "load_definition_file",
    "load_definitions",
    "resolve_image",
]
