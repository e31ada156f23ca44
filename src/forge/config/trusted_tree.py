"""Whether another local user could have chosen the content of a folder or file the
operator pointed Forge at (FORGE_POLICY_DIR, FORGE_TEMPLATE_DIR, FORGE_PLANS_FILE,
FORGE_IMAGE_DIR).

That content is what runs: the policies decide who may do what, a template's check
scripts run as the grader, an image definition's script runs as root at build time. So
the same rule as for a secret's file (``trusted_file``) holds for the path, every folder
on the way to it and every entry under it that is read: each must be this user's or
root's and not writable by other users. A folder on the way may be writable by all when
it is sticky (``/tmp``): others cannot rename or replace an entry of ours in it. Links are
followed only by checking the link, then every folder of its target again. The walk is
bounded (a depth and an entry cap), so a deep or huge tree is refused, not walked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from forge.config.storage_root import MAX_LINKS, look_up
from forge.config.trusted_file import chosen_by_others

MAX_ENTRIES = 4096  # the shipped content is a few dozen files
# Forge's own package (its shipped content lives in it): whoever may write there may change
# Forge's code too, so checking its content adds nothing, and a checkout its developer owns
# keeps working when root runs it (`sudo make demo`).
_PACKAGE = os.path.realpath(Path(__file__).resolve().parents[1])


class _TooMany(Exception):
    """The walk met more than MAX_ENTRIES entries or MAX_LINKS links."""


def _problem(path: str, info: os.stat_result, *, on_the_way: bool) -> str | None:
    """Why ``path`` (lstat ``info``) may hold another user's choice: a link owned by
    another user, or what ``chosen_by_others`` says (a sticky folder on the way allowed)."""
    me = os.geteuid()
    if stat.S_ISLNK(info.st_mode):
        if info.st_uid in (me, 0):
            return None
        return (f"{path} is a link owned by uid {info.st_uid}, not by uid {me}: that user "
                "could point it anywhere; remove it if you did not make it")
    if on_the_way and stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX \
            and info.st_uid in (me, 0):
        return None
    if not on_the_way and not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        # A device, FIFO or socket holds no content: its loader refuses it, naming what it
        # is (told to `chown /dev/zero`, an operator would be misled).
        return None
    why = chosen_by_others(path, info)
    return None if why is None else f"{path} {why}"


def _resolve(path: str, links: list[int]) -> tuple[str | None, str | None]:
    """Follow ``path`` from ``/`` one part at a time (`look_up`), checking every folder on
    the way and every link met (then its target's folders): (the real path, None), (None,
    problem), or (None, None) when a part is missing (the loader reports that)."""
    walk = look_up(os.path.abspath(path), follow_last=True, max_links=MAX_LINKS - links[0])
    for folder, name, info, more in walk.steps:
        if info is None:
            return None, None
        step = os.path.join(folder, name)
        why = _problem(step, info, on_the_way=more or stat.S_ISLNK(info.st_mode))
        if why is not None:
            return None, why
    links[0] += walk.links
    if links[0] > MAX_LINKS:
        raise _TooMany(f"{path} goes through more than {MAX_LINKS} links")
    here = walk.real
    if here is None:
        return None, f"{path} cannot be checked: a link on the way could not be read"
    if here != "/":
        why = _problem(here, os.lstat(here), on_the_way=False)
        if why is not None:
            return None, why
    return here, None


def _walk(folder: str, depth: int, seen: list[int], links: list[int], *,
          whole: bool) -> str | None:
    """Check every entry of ``folder`` (a checked real folder) and, ``depth`` levels down,
    of its sub-folders (``whole``: a sub-folder deeper is refused, as its loader would
    read it); a link's target is checked from ``/`` before it is descended."""
    with os.scandir(folder) as entries:
        for entry in entries:
            seen[0] += 1
            if seen[0] > MAX_ENTRIES:
                raise _TooMany(f"holds more than {MAX_ENTRIES} entries")
            info = entry.stat(follow_symlinks=False)
            real: str | None = entry.path
            if stat.S_ISLNK(info.st_mode):
                real, why = _resolve(entry.path, links)
            else:
                why = _problem(entry.path, info, on_the_way=False)
            if why is not None:
                return why
            if real is not None and os.path.isdir(real) and not os.path.islink(real):
                if depth <= 0:
                    if whole:
                        raise _TooMany(f"nests folders deeper than {entry.path}")
                    continue
                why = _walk(real, depth - 1, seen, links, whole=whole)
                if why is not None:
                    return why
    return None


def chosen_content(path: Path, *, depth: int = 0, whole: bool = False) -> str | None:
    """Why the content at ``path`` may be another local user's choice: the path, a folder on the
    way or (for a folder) an entry in it, ``depth`` folders down, that another user owns or
    may write; the message names that path, its owner and mode. None when only this user or
    root could have chosen it, when ``path`` is missing (the loader says so), or when it is
    Forge's own shipped content (in the package, beside its code). Refused too: more than
    MAX_ENTRIES entries within ``depth``, and (``whole``, for a loader that reads the whole
    tree) a folder deeper than ``depth``."""
    named = os.path.abspath(path)
    if os.path.realpath(named) == named and os.path.commonpath([named, _PACKAGE]) == _PACKAGE:
        # Shipped content, as trusted as the code beside it: named by its own path, not
        # through a link another user could point elsewhere between the check and the read.
        return None
    links = [0]
    try:
        real, why = _resolve(str(path), links)
        if why is not None or real is None or not os.path.isdir(real):
            return why
        return _walk(real, depth, [0], links, whole=whole)
    except _TooMany as exc:
        return f"{path} {exc}: refused rather than checked in part"
    except OSError as exc:
        return f"{path} cannot be checked: {exc.strerror}"


__all__ = ["MAX_ENTRIES", "chosen_content"]
