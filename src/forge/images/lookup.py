"""Image names to built root filesystems: the key of a definition and its cache lookup.

The key is the sha256 of the canonical definition, the mmdebstrap version and the dpkg
architecture, so editing a definition, upgrading the tool or moving to another
architecture gives a new image instead of silently reusing an old one.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
from pathlib import Path

from forge.errors import ForgeError
from forge.images.cache import ImageCache
from forge.images.definitions import PLATFORM_PACKAGES, ImageDefinition, load_definitions

# The version of the build procedure (build.py): bumped whenever it changes what a
# definition turns into, so every image is rebuilt rather than reused.
KEY_FORMAT = b"forge-image/2"


class ImageNotBuilt(ForgeError):
    """A template names an image that is not defined or not built on this machine."""

    def __init__(self, name: str, defined: bool) -> None:
        hint = (f"run forge image build {name}" if defined
                else "no definition of that name in FORGE_IMAGE_DIR")
        super().__init__("image_not_built" if defined else "unknown_image", 409,
                         f"image {name} is not {'built' if defined else 'defined'}: {hint}",
                         [{"field": "image", "image": name}])
        self.name = name


@functools.lru_cache(maxsize=1)
def tool_identity() -> tuple[str, str]:
    """(mmdebstrap version, dpkg architecture) of this machine (cached per process)."""
    version, arch = "none", "unknown"
    exe = shutil.which("mmdebstrap")
    if exe is not None:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
        words = out.stdout.split()
        version = words[-1] if words else "unknown"
    dpkg = shutil.which("dpkg")
    if dpkg is not None:
        out = subprocess.run([dpkg, "--print-architecture"], capture_output=True, text=True,
                             check=False)
        arch = out.stdout.strip() or "unknown"
    return version, arch


def image_key(definition: ImageDefinition, tool: tuple[str, str] | None = None) -> str:
    """sha256 hex of the canonical definition + the platform packages + mmdebstrap
    version + architecture."""
    version, arch = tool or tool_identity()
    h = hashlib.sha256(KEY_FORMAT + b"\0")
    platform = ",".join(PLATFORM_PACKAGES).encode()
    for part in (definition.canonical(), platform, version.encode(), arch.encode()):
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


def resolve_image(name: str, definitions_dir: Path, cache_root: Path) -> Path:
    """The built root filesystem of image ``name``, or ImageNotBuilt saying what to do."""
    definitions = load_definitions(definitions_dir)
    definition = definitions.get(name)
    if definition is None:
        raise ImageNotBuilt(name, defined=False)
    entry = ImageCache(cache_root).get(image_key(definition))
    if entry is None:
        raise ImageNotBuilt(name, defined=True)
    return entry.rootfs
