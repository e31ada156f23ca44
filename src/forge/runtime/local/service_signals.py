"""How a host's service gets default signal dispositions, decided once per root.

A shell without job control starts a background command with SIGINT and SIGQUIT
ignored, and no POSIX shell can undo that inside the command; ``env --default-signal``
(coreutils >= 8.31) can. A root whose ``env`` lacks the option (an older userland, a
busybox tree) would make the service fail to start at all, so the option is looked for
in the root's own ``env`` program (its option names are strings in it), once per root
and version of that file; without it the service starts plainly, with a warning.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("forge.runtime.service_signals")

PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
OPTION = "--default-signal"
_CHUNK = 1 << 16
_known: dict[tuple[str, str, int, int, int], bool] = {}
_lock = threading.Lock()


def service_prefix(root: str) -> tuple[str, ...]:
    """The command prefix resetting SIGINT/SIGQUIT for a service in root ``root`` (the
    in-root ``env`` with ``--default-signal``), or nothing when that ``env`` lacks it."""
    found = _find_env(root)
    if found is None:
        key: tuple[str, str, int, int, int] = (root, "", 0, 0, 0)
    else:
        st = os.stat(found[1])
        key = (root, found[0], st.st_ino, st.st_mtime_ns, st.st_size)
    with _lock:
        ok = _known.get(key)
    if ok is None:
        ok = found is not None and _mentions(found[1], OPTION.encode())
        with _lock:
            _known[key] = ok
        if not ok:
            log.warning("root %s: env has no %s; services there start with SIGINT and "
                        "SIGQUIT ignored", root, OPTION)
    return (found[0], OPTION) if ok and found is not None else ()


def _find_env(root: str) -> tuple[str, str] | None:
    """``env``'s path inside ``root`` (the first on the hosts' PATH) and on the machine,
    following symlinks relative to ``root`` (busybox trees link it to /bin/busybox)."""
    for d in PATH_DIRS:
        inside = f"{d}/env"
        target = _resolve(root, inside)
        if target is not None and os.path.isfile(target):
            return inside, target
    return None


def _resolve(root: str, inside: str) -> str | None:
    """Machine path of in-root path ``inside``, following a final symlink chain as the
    root would see it (bounded)."""
    for _ in range(16):
        full = os.path.join(root, inside.lstrip("/"))
        if not os.path.islink(full):
            return full if os.path.exists(full) else None
        link = os.readlink(full)
        inside = os.path.normpath(link if link.startswith("/")
                                  else os.path.join(os.path.dirname(inside), link))
    return None


def _mentions(path: str, needle: bytes) -> bool:
    """Whether the file at ``path`` contains ``needle`` (read in chunks)."""
    try:
        with open(path, "rb") as fh:
            tail = b""
            while chunk := fh.read(_CHUNK):
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle):]
    except OSError:
        return False
    return False
