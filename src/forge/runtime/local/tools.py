"""Absolute paths of the machine programs the runtime runs, found once per process.

A bare name makes every start search PATH (≈46 failed look-ups per lab with a long
PATH); the runtime's own programs (bwrap, ip, nsenter, nft) are looked up with
``machine_program`` (the machine's system folders, never PATH) until found, then cached.
Programs run *inside* a sandbox (``setpriv``, ``sh``) are never resolved here: an image
host's root is its own and its PATH finds them there.
"""

from __future__ import annotations

from forge.machine_path import machine_program

_FOUND: dict[str, str] = {}


def _which(name: str) -> str | None:
    """``name``'s absolute path; only hits are cached (a program installed after a miss
    is found on the next look-up, without a restart)."""
    path = _FOUND.get(name)
    if path is None:
        path = machine_program(name)
        if path is not None:
            _FOUND[name] = path
    return path


def tool(name: str) -> str:
    """The absolute path of machine program ``name`` (the bare name when not found, so
    the failure names it when run; ``LocalRuntime.check`` reports missing tools first)."""
    return _which(name) or name


def missing(names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` are not installed on the machine."""
    return [n for n in names if _which(n) is None]
