"""FrostGate Forge: governed, sandboxed cyber-training with signed verdicts."""

import sys
import types

__version__ = "0.1.0"


def _no_httpx_cli() -> None:
    """Keep httpx from loading its own command-line client.

    `import httpx` imports `httpx._main` (click, rich, pygments) whenever those are
    installed, as they are here for `forge`'s own CLI: about 0.15 s of CPU in every service
    start and command, and the only reason a service loads rich at all. Forge never runs
    httpx's client, so its module is registered as an empty one before httpx is imported;
    `httpx.main` then does nothing. Nothing changes once httpx is loaded already.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stub = types.ModuleType("httpx._main", "httpx's command-line client, not loaded by Forge")
    stub.main = lambda: None  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stub


_no_httpx_cli()
