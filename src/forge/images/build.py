"""Build an image with mmdebstrap into the cache.

The packages come from the Debian mirror this machine's apt sources already name
(``/etc/apt/sources.list`` and ``sources.list.d``), for the definition's suite and its
``-updates``/``-security`` companions: no other download. mmdebstrap runs in a private
mount and pid namespace (``unshare --mount --pid --kill-child``) tied to the building
process (parent-death signal): if ``forge image build`` dies, every process of the build
is killed and the /dev, /proc and /sys it mounted into the chroot vanish with it. The
tree is built in a staging directory and becomes the cached image in one rename (see
``cache``).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from forge.detached import run_detached
from forge.errors import ForgeError
from forge.images.cache import ROOTFS, CacheEntry, ImageCache, remove_tree
from forge.images.definitions import ImageDefinition
from forge.images.lookup import image_key
from forge.images.tree import dir_in_tree, resolve_parent, write_in_tree
from forge.machine_path import MACHINE_PATH, machine_program

APT_DIR = Path("/etc/apt")
APT_LISTS = Path("/var/lib/apt/lists")
# Documentation, manual pages and translations are not needed in a lab and take a third
# of a minbase tree.
DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*",
                 "/usr/share/locale/*", "/usr/share/lintian/*")
# Mount points the sandbox binds into every image host; they must exist in the
# read-only tree (directories, then files bound over /etc).
MOUNT_DIRS = ("proc", "dev", "run", "tmp", "var/tmp", "home", "srv", "root", "workspace",
              "opt/forge")
MOUNT_FILES = ("etc/passwd", "etc/group", "etc/hosts", "etc/resolv.conf")
SCRIPT_NAME = "forge-image-build.sh"
MANIFEST_NAME = "files.json"
PR_SET_PDEATHSIG = 1


class ImageBuildError(ForgeError):
    """A build that failed; the message carries mmdebstrap's own reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__("image_build_failed", 500, f"image {name} failed to build: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class BuildResult:
    """The built entry and whether this call built it (False: it was already cached)."""

    entry: CacheEntry
    built: bool
    seconds: float


def _deb822_sources(text: str) -> list[tuple[str, list[str], list[str]]]:
    """(uri, suites, components) of each ``Types: deb`` stanza of a .sources file."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split():
            for uri in fields.get("uris", "").split():
                out.append((uri, fields.get("suites", "").split(),
                            fields.get("components", "main").split()))
    return out


def _one_line_sources(text: str) -> list[tuple[str, list[str], list[str]]]:
    """(uri, [suite], components) of each ``deb URI SUITE COMP…`` line."""
    out = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if words[:1] != ["deb"]:
            continue
        words = words[1:]
        if len(words) >= 3:
            out.append((words[0], [words[1]], words[2:]))
    return out


def apt_mirrors(suite: str, apt_dir: Path = APT_DIR) -> list[str]:
    """The machine's apt source lines for ``suite`` and its -updates/-security suites."""
    found: list[tuple[str, list[str], list[str]]] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        found += _deb822_sources(text) if path.suffix == ".sources" else \
            _one_line_sources(text) if path.suffix == ".list" else []
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    lines = []
    for uri, suites, comps in found:
        if not uri.startswith(("http://", "https://")):
            continue
        for name in suites:
            if name in wanted:
                lines.append(f"deb {uri} {name} {' '.join(comps)}")
    if not any(line.split()[2] == suite for line in lines):
        raise ImageBuildError(suite, f"no apt source of this machine serves suite {suite!r} "
                              f"(looked in {apt_dir}/sources.list and sources.list.d)")
    return lines


def unknown_packages(suite: str, packages: tuple[str, ...],
                     lists: Path = APT_LISTS) -> list[str]:
    """Packages this machine's apt lists for ``suite`` do not know, checked in a moment
    before mmdebstrap spends a minute downloading indices to say the same. Empty when the
    machine has no lists of that suite, or apt-cache gives no answer in time (mmdebstrap
    then decides)."""
    apt_cache = machine_program("apt-cache")
    if not list(lists.glob(f"*_dists_{suite}_*Packages*")) or apt_cache is None:
        return []
    try:
        out = run_detached([apt_cache, "policy", "--", *packages], timeout=120,
                           env={"LANG": "C", "PATH": MACHINE_PATH})
    except subprocess.TimeoutExpired:
        return []
    if out.returncode != 0:
        return []
    known = {m.group(1) for m in re.finditer(r"^(\S+):$", out.stdout, re.MULTILINE)}
    return [p for p in packages if p not in known]


def _stage_inputs(definition: ImageDefinition, scratch: Path) -> list[str]:
    """Stage the definition's files (a manifest) and script under ``scratch``; the
    customize hooks that write them into the chroot and run the script.

    The files are written by ``forge.images.tree`` (this interpreter), which resolves every
    parent inside the image: a symlink a package planted (``/etc/x -> /tmp/y``) is followed
    as the image sees it, never onto the building machine."""
    hooks = []
    if definition.files:
        manifest = scratch / MANIFEST_NAME
        manifest.write_text(json.dumps([
            {"path": path, "content": item.content, "mode": item.mode}
            for path, item in definition.files.items()]), encoding="utf-8")
        hooks.append(f"{shlex.quote(sys.executable)} -I -m forge.images.tree "
                     f'"$1" {shlex.quote(str(manifest))}')
    if definition.script is not None:
        script = scratch / SCRIPT_NAME
        script.write_text(definition.script, encoding="utf-8")
        hooks += [f"copy-in {script} /tmp",
                  f'chroot "$1" /bin/sh -eu /tmp/{SCRIPT_NAME}']  # removed by _finalize
    # Last: mmdebstrap's own cleanup (rm -r of /tmp and /run…) runs from the machine.
    hooks.append(f'{shlex.quote(sys.executable)} -I -m forge.images.tree --guard "$1"')
    return hooks


def mmdebstrap_argv(definition: ImageDefinition, target: Path, mirrors: list[str],
                    hooks: list[str]) -> list[str]:
    """The command line building ``definition`` into ``target``: ``unshare`` and
    ``mmdebstrap`` from the machine's system folders (``machine_path``), never from PATH."""
    argv = [machine_program("unshare") or "unshare", "--mount", "--propagation", "private",
            "--pid", "--fork", "--kill-child", "--mount-proc", "--",
            machine_program("mmdebstrap") or "mmdebstrap", "--mode=root", "--variant=minbase",
            "--format=directory", "--verbose"]
    argv.append("--include=" + ",".join(definition.all_packages()))
    argv += [f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES]
    argv += [f"--customize-hook={hook}" for hook in hooks]
    return [*argv, definition.suite, str(target), *mirrors]


# What mmdebstrap runs (apt, dpkg, chroot, its hooks) comes from the system folders too.
BUILD_ENV = {"PATH": MACHINE_PATH, "LANG": "C.UTF-8"}


# mmdebstrap copies these from the building machine for the build's own use; an image
# must not carry the machine's name or resolver into every lab.
NEUTRAL_FILES = {"etc/hostname": "forge-lab\n", "etc/resolv.conf": ""}


def _finalize(rootfs: Path) -> None:
    """Replace what came from the building machine and create the mount points the
    sandbox binds (the tree is read-only in a lab).

    The build script ran as root in the tree and may have left symlinks on these paths or
    their parents: each is resolved inside the image (``forge.images.tree``), so nothing
    is written on the building machine through them."""
    for sub, text in NEUTRAL_FILES.items():
        write_in_tree(rootfs, sub, text.encode(), 0o644)
    for sub in MOUNT_DIRS:
        dir_in_tree(rootfs, sub)
    # The script's copy, once /tmp is surely a directory of the image (the script may
    # have made it a link elsewhere).
    (rootfs / "tmp" / SCRIPT_NAME).unlink(missing_ok=True)
    for sub in MOUNT_FILES:
        parent, name = resolve_parent(rootfs, sub)
        path = parent / name
        if path.is_symlink() or not path.is_file():
            write_in_tree(rootfs, sub, b"", 0o644)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the building process dies, so a killed
    ``forge image build`` never leaves mmdebstrap writing into a staging directory."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


_UNLOCATED = re.compile(r"^E: Unable to locate package (\S+)$")


def _tail_reason(lines: deque[str], suite: str) -> str:
    """mmdebstrap's error lines (``E: …``) with the few lines before the first one (a
    failing script's or apt's own words), else its last lines; packages apt could not
    find are named as such (a machine without apt lists cannot tell before the build)."""
    kept = list(lines)
    missing = [m.group(1) for m in map(_UNLOCATED.match, kept) if m is not None]
    if missing:
        return f"no such package in the suite {suite}: {', '.join(missing)}"
    first = next((i for i, ln in enumerate(kept) if ln.startswith("E:")), None)
    if first is None:
        return " | ".join(kept[-5:]) or "(no output)"
    context = [ln for ln in kept[max(0, first - 3):first] if ln.strip()]
    reason = " | ".join([*context, *(ln for ln in kept[first:] if ln.startswith("E:"))])
    return reason[-2000:]


def build_image(
    definition: ImageDefinition,
    cache: ImageCache,
    *,
    on_line: Callable[[str], None] | None = None,
    apt_dir: Path = APT_DIR,
) -> BuildResult:
    """Build ``definition`` into ``cache`` unless it is already there.

    Holds the key's lock for the whole build, so a second process building the same
    image waits and then finds it built. A failure (unknown package, unreachable mirror,
    failing script) leaves nothing in the cache and raises ImageBuildError with the reason.
    """
    if re.search(r"\s", str(cache.root)):
        raise ImageBuildError(definition.name, "the image cache path must not contain spaces")
    key = image_key(definition)
    start = time.monotonic()
    with cache.lock(key):
        entry = cache.get(key)
        if entry is not None:
            return BuildResult(entry, False, time.monotonic() - start)
        if machine_program("mmdebstrap") is None or machine_program("unshare") is None:
            raise ImageBuildError(definition.name, "mmdebstrap is not installed "
                                  "(run make system-deps, or apt-get install mmdebstrap)")
        mirrors = apt_mirrors(definition.suite, apt_dir)
        if apt_dir == APT_DIR:  # the machine's lists describe the machine's sources
            unknown = unknown_packages(definition.suite, definition.all_packages())
            if unknown:
                raise ImageBuildError(definition.name, "no such package in the suite "
                                      f"{definition.suite} of this machine's apt sources: "
                                      f"{', '.join(unknown)}")
        staging = cache.new_staging(key)
        try:
            hooks = _stage_inputs(definition, staging)
            argv = mmdebstrap_argv(definition, staging / ROOTFS, mirrors, hooks)
            tail: deque[str] = deque(maxlen=40)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace",
                                    start_new_session=True, preexec_fn=_die_with_parent,
                                    env=BUILD_ENV)
            assert proc.stdout is not None
            try:
                for raw in proc.stdout:
                    line = raw.rstrip()
                    tail.append(line)
                    if on_line is not None:
                        on_line(line)
                code = proc.wait()
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            if code != 0:
                raise ImageBuildError(definition.name, _tail_reason(tail, definition.suite))
            _finalize(staging / ROOTFS)
            for leftover in (MANIFEST_NAME, SCRIPT_NAME):
                path = staging / leftover
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            seconds = time.monotonic() - start
            entry = cache.install(key, staging, definition.name, seconds)
        except BaseException:
            remove_tree(staging)
            raise
    return BuildResult(entry, True, seconds)

