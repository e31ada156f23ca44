"""Where a seeded file may go, shared by the template check and the runtime's plan.

A host on the machine's userland has a read-only root: seeds go only into its writable
trees (/home, /workspace, /srv) or the read-only seeds' tree /opt/forge. A host on an
image has its own writable root (an overlay on the lab's disk), so a seed may go
anywhere in it except where the platform mounts something over the image (the kernel
and scratch filesystems) or binds the lab's identity files.
"""

from __future__ import annotations

from forge.templates.dsl_limits import (
    IDENTITY_FILES,
    IMAGE_SEED_FORBIDDEN,
    PLATFORM_PROGRAM_PATHS,
    READONLY_SEED_DIR,
    WRITABLE_DIRS,
)

LEARNER_DIRS = tuple(d for d in WRITABLE_DIRS if d != READONLY_SEED_DIR)


def under(path: str, dirs: tuple[str, ...]) -> bool:
    """Whether the normalized absolute ``path`` is inside one of ``dirs``."""
    return any(path == d or path.startswith(d + "/") for d in dirs)


def seed_path_problem(path: str, on_image: bool, owner: str | None) -> str | None:
    """Why a normalized absolute seed ``path`` is refused on a host (None if allowed).

    ``on_image``: the host runs on an image (writable root); ``owner``: the seed's
    ``owner`` field (None: the default, learner in the learner's trees, root elsewhere).
    """
    if under(path, (READONLY_SEED_DIR,)):
        if owner == "learner":
            return (f"is in {READONLY_SEED_DIR}, the read-only seeds' tree: owner learner is "
                    "not possible")
        return None
    if not on_image:
        if not under(path, LEARNER_DIRS):
            return (f"is outside the writable dirs ({', '.join(WRITABLE_DIRS)}) of a host "
                    "without an image (its root is the machine's read-only userland)")
        return None
    if path in IDENTITY_FILES:
        return "is a lab identity file, which the platform binds over the image"
    if under(path, IMAGE_SEED_FORBIDDEN):
        return (f"is under one of {', '.join(IMAGE_SEED_FORBIDDEN)}, which are mounted over "
                "the image")
    if owner == "learner" and under(path, PLATFORM_PROGRAM_PATHS):
        return ("owner learner is not possible among programs, libraries and the loader's "
                "configuration (the platform runs programs from there as root)")
    return None


def effective_owner(path: str, owner: str | None) -> str:
    """``learner`` or ``root``: who owns the seeded file in the host."""
    if owner is not None:
        return owner
    return "learner" if under(path, LEARNER_DIRS) else "root"
