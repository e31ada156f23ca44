"""Whether a host's service command and environment fit in one exec.

The kernel refuses an exec whose single argument or environment string reaches 128 KiB
(E2BIG). A fresh lab would fail loudly, but a warm pool lab starts its service only after
the lab reports running, so an oversized value must be refused before any lab is built:
by `forge template check` on the values as written and by the runtime on the rendered ones.
The service command travels as one environment string, ``FG_CMD=COMMAND``, and each
environment variable as ``FGE_NAME=VALUE`` on its way to an exec (the runtime keeps them
off command lines, which every local user of the node can read).
"""

from __future__ import annotations

from collections.abc import Mapping

from forge.templates import dsl_limits as L

# The variable the runtime hands a host's service command in (counted with the command).
COMMAND_VAR = "FG_CMD"
# The prefix each environment variable carries on its way to an exec's, terminal's or
# check's command (the root steps before it never see the host's own names): counted,
# as the longest form a value travels in.
ENV_PREFIX = "FGE_"


def _size(text: str) -> int | None:
    """Bytes `text` takes in an exec (as os.fsencode writes it); None: not encodable."""
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return None


def exec_size_problems(environment: Mapping[str, str],
                       command: str | None) -> list[tuple[str, str]]:
    """(field, message) for every value that would not fit: ``environment.NAME``,
    ``command`` or, for the total, ``environment``."""
    out: list[tuple[str, str]] = []
    total = 0
    items = [(f"environment.{name}", f"{ENV_PREFIX}{name}={value}")
             for name, value in environment.items()]
    if command is not None:
        items.append(("command", f"{COMMAND_VAR}={command}"))
    for field, text in items:
        size = _size(text)
        if size is None:
            out.append((field, "is not encodable text (a lone surrogate)"))
            continue
        total += size
        if size > L.MAX_EXEC_STRING_BYTES:
            out.append((field, f"is {size} bytes; one exec string holds at most "
                               f"{L.MAX_EXEC_STRING_BYTES} (the kernel's limit)"))
    if total > L.MAX_HOST_EXEC_BYTES and not out:
        out.append(("environment", f"environment and command are {total} bytes together; "
                                   f"at most {L.MAX_HOST_EXEC_BYTES} per host"))
    return out
