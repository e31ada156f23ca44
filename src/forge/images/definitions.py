"""Image definitions: what a lab root filesystem is made of, as a strict, bounded model.

A definition names a Debian suite, the packages installed on top of the ``minbase``
variant, files written into the tree and an optional script run inside it at build time.
Every field is bounded and checked before anything is built, so a bad definition is an
error naming its file and field, never a half-built image.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from forge.config.trusted_tree import chosen_content
from forge.errors import ForgeError

MAX_FILE_BYTES = 64 * 1024  # one definition file
MAX_DEFINITIONS = 64
MAX_PACKAGES = 64
MAX_FILES = 32
MAX_CONTENT = 32 * 1024
MAX_SCRIPT = 16 * 1024
# Where a definition may write files: configuration and service data, never the system's
# own binaries or libraries (a package provides those).
SAFE_PREFIXES = ("/etc/", "/opt/", "/srv/", "/usr/local/", "/var/lib/", "/var/www/", "/home/")
# The image name of a host on the machine's own userland (never built): an explicit,
# non-default choice for test fixtures and development, never a shipped template's.
HOST_USERLAND = "host"
# The image of a host that names none (templates.dsl_limits.DEFAULT_IMAGE says the same).
DEFAULT_IMAGE = "base"
# Installed in every image: exec and the terminal enter a host and start bwrap there to
# load the lab's seccomp filter, so the image must carry it (``runtime.local.execute``).
PLATFORM_PACKAGES = ("bubblewrap",)
_COMPONENT = re.compile(r"^[A-Za-z0-9_+@-][A-Za-z0-9._+@-]{0,63}\Z")

ImageName = Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
# Debian policy §5.6.7: lower case letters, digits, + - . ; at least two, starting alnum.
PackageName = Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9+.-]{1,62}$")]


class ImageDefinitionError(ForgeError):
    """A definition that cannot be used; the message names the file and the field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__("invalid_image_definition", 422,
                         f"{source}: " + "; ".join(problems),
                         [{"file": source, "problem": p} for p in problems])
        self.source = source
        self.problems = problems


class ImageFile(BaseModel):
    """One file written into the image: its text and permission bits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: Annotated[StrictStr, Field(max_length=MAX_CONTENT)] = ""
    mode: Annotated[StrictInt, Field(ge=0, le=0o777)] = 0o644


def check_image_path(path: str) -> str:
    """An absolute path under one of SAFE_PREFIXES with plain components (no ``..``)."""
    if len(path) > 255 or not path.startswith(SAFE_PREFIXES):
        raise ValueError(f"must be an absolute path under one of {', '.join(SAFE_PREFIXES)}")
    parts = path.split("/")[1:]
    if not all(_COMPONENT.match(p) for p in parts):
        raise ValueError("components must be plain names (letters, digits, ._+@-; no '..')")
    return path


class ImageDefinition(BaseModel):
    """One image: ``name`` (the file's stem), Debian ``suite``, ``packages`` on top of
    minbase, ``files`` (path → content and mode) and an optional build ``script`` (run
    with /bin/sh -eu inside the image, as root, after the files are written)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ImageName
    description: Annotated[str, Field(max_length=200)] = ""
    suite: Annotated[str, Field(pattern=r"^[a-z]{2,32}$")] = "bookworm"
    packages: Annotated[tuple[PackageName, ...], Field(max_length=MAX_PACKAGES)] = ()
    files: Annotated[dict[str, ImageFile], Field(max_length=MAX_FILES)] = Field(
        default_factory=dict)
    script: Annotated[str, Field(max_length=MAX_SCRIPT)] | None = None

    @field_validator("packages")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each package may be listed once")
        return value

    @field_validator("files")
    @classmethod
    def _paths(cls, value: dict[str, ImageFile]) -> dict[str, ImageFile]:
        for path in value:
            try:
                check_image_path(path)
            except ValueError as exc:
                raise ValueError(f"{path!r}: {exc}") from None
        return value

    def all_packages(self) -> tuple[str, ...]:
        """The definition's packages plus the PLATFORM_PACKAGES every image needs."""
        return (*self.packages, *(p for p in PLATFORM_PACKAGES if p not in self.packages))

    def canonical(self) -> bytes:
        """The definition as canonical JSON (sorted keys, no spaces): what its key hashes."""
        body = self.model_dump(mode="json")
        return json.dumps(body, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()


def _problems(err: ValidationError) -> list[str]:
    """Each error as ``field.path: message`` (pydantic's messages, no input values)."""
    out = []
    for item in err.errors(include_input=False, include_url=False):
        loc = "".join(f"[{p}]" if isinstance(p, int) else f"[{p!r}]" if "/" in str(p)
                      else f".{p}" for p in item["loc"]).lstrip(".")
        out.append(f"{loc or '(top)'}: {item['msg']}")
    return out


def parse_definition(data: Any, source: str, name: str | None = None) -> ImageDefinition:
    """Validate parsed YAML; ``name`` (the file's stem) must match the ``name`` field."""
    if not isinstance(data, Mapping):
        raise ImageDefinitionError(source, ["(top): must be a mapping of fields"])
    try:
        definition = ImageDefinition.model_validate(dict(data))
    except ValidationError as exc:
        raise ImageDefinitionError(source, _problems(exc)) from None
    if name is not None and definition.name != name:
        raise ImageDefinitionError(source, [f"name: must be {name!r}, the file's name"])
    return definition


def load_definition_file(path: Path) -> ImageDefinition:
    """Read and validate one ``NAME.yaml`` (a regular file of at most 64 KiB)."""
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ImageDefinitionError(source, [f"cannot be read: {exc.strerror}"]) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageDefinitionError(source, ["is not a regular file"])
        raw = fh.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ImageDefinitionError(source, [f"is larger than {MAX_FILE_BYTES} bytes"])
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ImageDefinitionError(source, [f"is not valid YAML ({type(exc).__name__})"]) \
            from None
    return parse_definition(data, source, path.stem)


def load_definitions(directory: Path) -> dict[str, ImageDefinition]:
    """Every ``*.yaml`` definition of ``directory`` by name (a bad one fails the load, as
    does a directory or file another local user owns or may write)."""
    if not directory.is_dir():
        raise ImageDefinitionError(str(directory), ["is not a directory of image definitions"])
    chosen = chosen_content(directory)  # a definition's script runs as root at build time
    if chosen is not None:
        raise ImageDefinitionError(str(directory), [chosen])
    paths = sorted(directory.glob("*.yaml"))
    if len(paths) > MAX_DEFINITIONS:
        raise ImageDefinitionError(str(directory), [f"holds more than {MAX_DEFINITIONS} images"])
    return {path.stem: load_definition_file(path) for path in paths}
