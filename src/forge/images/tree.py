"""Writing into an image tree as root without ever leaving it.

A package or a definition's build script runs as root inside the image and may leave
symlinks anywhere (``/etc/evil -> /tmp/x``, ``/opt -> /``). Read from the building
machine, such a link points *outside* the image, so a plain ``open(rootfs/etc/evil/f)``
by the builder would write on the machine itself. Every path written here is resolved
the way the image's own processes would see it (chroot semantics: an absolute target
starts again at the image's root, ``..`` stops there), so a write always lands inside
the tree; the last component is never followed (a symlink there is replaced).

Also run as ``python -m forge.images.tree ROOTFS MANIFEST`` from an mmdebstrap hook (the
building interpreter), to write a definition's ``files:`` after the packages and before
its script.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from forge import treepath
from forge.durable import write_all


class TreeEscape(OSError):
    """A path that cannot be resolved inside the tree (a link loop, a file as a parent)."""


def resolve_parent(root: Path, path: str) -> tuple[Path, str]:
    """(real directory inside ``root``, last component) for ``path`` read as inside the
    image: symlinked parents are followed within ``root`` and missing ones created
    (0755, root-owned); the last component is not looked at."""
    parts = treepath.split(path)
    if not parts or parts[-1] == "..":
        raise TreeEscape(f"{path!r} does not name a file")
    try:
        done, _ = treepath.walk(root, parts[:-1], create=True)
    except treepath.TreePathError as exc:
        raise TreeEscape(f"{path!r}: {exc} inside the image") from None
    parent = root.joinpath(*done)
    if not stat.S_ISDIR(os.lstat(parent).st_mode):  # ``done`` holds no link
        raise TreeEscape(f"{path!r}: /{'/'.join(done)} is not a directory")
    return parent, parts[-1]


def write_in_tree(root: Path, path: str, data: bytes, mode: int) -> Path:
    """Write ``data`` at ``path`` of the image ``root`` (root-owned, ``mode``), replacing
    a symlink or file there; never follows a link out of the tree. Returns the real path."""
    parent, name = resolve_parent(root, path)
    target = parent / name
    if os.path.islink(target):
        os.unlink(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TreeEscape(f"{path!r} exists and is not a regular file")
        write_all(fd, data, sync=False)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return target


def dir_in_tree(root: Path, path: str) -> Path:
    """Make ``path`` a real directory of the image ``root`` (a symlink or file there is
    replaced), resolving its parents inside the tree. Returns the real path."""
    parent, name = resolve_parent(root, path)
    target = parent / name
    if os.path.islink(target) or (target.exists() and not target.is_dir()):
        os.unlink(target)
    if not target.exists():
        os.mkdir(target, 0o755)
        os.chmod(target, 0o755)  # noqa: S103 - a mount point, world-readable
    return target


# Paths mmdebstrap itself works on from the building machine once the customize hooks are
# done (it empties /tmp and /run with ``rm -r``, rewrites /etc/machine-id, unlinks its apt
# configuration): a symlink on one of them would point that work at the machine.
GUARDED = ("etc", "etc/apt", "etc/apt/apt.conf.d", "run", "tmp", "usr", "usr/bin", "var",
           "var/lib", "var/lib/apt", "var/lib/apt/lists")


def guard_problems(root: Path, apt_config: str | None = None) -> list[str]:
    """Each GUARDED path of the image that is a symlink; and
    mmdebstrap's apt configuration (``apt_config``, a file in the image's /tmp) gone: its
    cleanup would then run ``apt-get update``/``clean`` on the machine's own apt state."""
    problems = []
    if apt_config and not os.path.isfile(apt_config):
        problems.append(f"mmdebstrap's apt configuration {apt_config} was removed from the "
                        "image's /tmp; do not empty /tmp in a build script")
    for sub in GUARDED:
        path = root / sub
        if os.path.islink(path):  # missing is fine: mmdebstrap skips or recreates it
            problems.append(f"/{sub} is a symlink (to {os.readlink(path)}); make it a "
                            "directory")
    return problems


def write_manifest(root: Path, manifest: Path) -> None:
    """Write each ``{"path", "content", "mode"}`` of the JSON list ``manifest``."""
    for item in json.loads(manifest.read_text(encoding="utf-8")):
        write_in_tree(root, str(item["path"]), str(item["content"]).encode(), int(item["mode"]))


def main(argv: list[str]) -> int:
    """``ROOTFS MANIFEST``: write the files; ``--guard ROOTFS``: exit 3 naming each
    GUARDED path that is not a plain directory (the last customize hook, so mmdebstrap
    fails before its own cleanup follows such a link onto the machine)."""
    if argv[:1] == ["--guard"]:
        problems = guard_problems(Path(argv[1]), os.environ.get("MMDEBSTRAP_APT_CONFIG"))
        for problem in problems:
            print(f"forge image build: refused: {problem} (mmdebstrap's cleanup works "
                  "from the building machine)", file=sys.stderr)
        return 3 if problems else 0
    write_manifest(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through real image builds
    sys.exit(main(sys.argv[1:]))
