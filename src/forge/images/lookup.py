"""Image names to built root filesystems: the key of a definition and its cache lookup.

The key is the sha256 of the canonical definition, the mmdebstrap version and the dpkg
architecture, so editing a definition, upgrading the tool or moving to another
architecture gives a new image instead of silently reusing an old one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from pathlib import Path

from forge.config.trusted_tree import chosen_content
from forge.detached import run_detached
from forge.errors import ForgeError
from forge.images.cache import ImageCache
from forge.images.definitions import (
    PLATFORM_PACKAGES,
    ImageDefinition,
    ImageDefinitionError,
    load_definition_file,
)
from forge.machine_path import MACHINE_PATH, machine_program

# The version of the build procedure (build.py): bumped whenever it changes what a
# definition turns into, so every image is rebuilt rather than reused.
KEY_FORMAT = b"forge-image/2"


class TemplateImageError(ForgeError):
    """The image a template names cannot be used, and the message (written for the
    template's author and learner) says why: a lab's reason shows it. Any other error of
    the lookup is the machine's own (a definitions file it cannot read)."""


class ImageNotBuilt(TemplateImageError):
    """A template names an image that is not defined or not built on this machine."""

    def __init__(self, name: str, defined: bool) -> None:
        hint = (f"run forge image build {name}" if defined
                else "no definition of that name in FORGE_IMAGE_DIR (a folder set there "
                "replaces the shipped images: copy those the lab uses, such as base.yaml, "
                "into it)")
        super().__init__("image_not_built" if defined else "unknown_image", 409,
                         f"image {name} is not {'built' if defined else 'defined'}: {hint}",
                         [{"field": "image", "image": name}])
        self.name = name


def _ask(exe: str, *args: str) -> str:
    """What `exe args` prints. Detached (``forge.detached``), so a signal to the service's
    process group (a stop by `forge up`) cannot cut it short; a tool that does
    not answer raises rather than give a wrong key, and nothing is cached then. What it
    runs in turn (mmdebstrap asks dpkg) comes from the machine's system folders too."""
    out = run_detached([exe, *args], timeout=60, env={"PATH": MACHINE_PATH, "LANG": "C"})
    if out.returncode != 0 or not out.stdout.strip():
        raise ImageToolFailed(f"{exe} {' '.join(args)} gave no answer "
                              f"(exit {out.returncode}); retry")
    return out.stdout.strip()


class ImageToolFailed(ForgeError):
    """mmdebstrap or dpkg could not say their version or architecture just now."""

    def __init__(self, message: str) -> None:
        super().__init__("image_tool_failed", 503, message)


@functools.lru_cache(maxsize=1)
def tool_identity() -> tuple[str, str]:
    """(mmdebstrap version, dpkg architecture) of this machine (cached per process once
    read; a failed read is not cached). A key made of a wrong answer would name no built
    image, and a lab would fail as "not built" although it is."""
    version, arch = "none", "unknown"
    exe = machine_program("mmdebstrap")
    if exe is not None:
        version = _ask(exe, "--version").split()[-1]
    dpkg = machine_program("dpkg")
    if dpkg is not None:
        arch = _ask(dpkg, "--print-architecture")
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


_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")  # definitions.ImageName
# (definitions file) -> (its (mtime_ns, size, inode), the parsed definition)
_LOADED: dict[Path, tuple[tuple[int, int, int], ImageDefinition]] = {}
_LOADED_LOCK = threading.Lock()


class InvalidImageName(TemplateImageError):
    """A template names an image with a name no definition can have (``/``, ``..``…)."""

    def __init__(self, name: str) -> None:
        shown = name if len(name) <= 64 else name[:64] + "…"
        super().__init__("invalid_image_name", 422,
                         f"image {shown!r} is not a valid image name: it must match "
                         "[a-z][a-z0-9-]{0,31} (no '/', no '..')",
                         [{"field": "image"}])


def load_named(name: str, definitions_dir: Path) -> ImageDefinition | None:
    """The definition ``NAME.yaml`` of ``definitions_dir`` (None if there is none), read
    again only when the file changed; only that file is read, so another broken
    definition never stops this one. A name that is not an image name is refused before
    any path is built from it; a file another local user owns or may write (or a folder
    above it) is refused, ImageDefinitionError naming it, its owner and mode."""
    if not _NAME.fullmatch(name):
        raise InvalidImageName(name)
    path = definitions_dir / f"{name}.yaml"
    chosen = chosen_content(path)  # its script runs as root at build time
    if chosen is not None:
        raise ImageDefinitionError(str(path), [chosen])
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ImageDefinitionError(str(path), [f"cannot be read: {exc.strerror}"]) from None
    stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
    with _LOADED_LOCK:
        cached = _LOADED.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    definition = load_definition_file(path)
    with _LOADED_LOCK:
        _LOADED[path] = (stamp, definition)
    return definition


def resolve_image(name: str, definitions_dir: Path, cache_root: Path) -> Path:
    """The built root filesystem of image ``name``, or ImageNotBuilt saying what to do
    (InvalidImageName for a name with ``/``, ``..`` or other characters)."""
    definition = load_named(name, definitions_dir)
    if definition is None:
        raise ImageNotBuilt(name, defined=False)
    entry = ImageCache(cache_root).get(image_key(definition))
    if entry is None:
        raise ImageNotBuilt(name, defined=True)
    return entry.rootfs
