"""The runtime engines Forge can run labs with, by the name `FORGE_RUNTIME_ENGINE` takes.

Each entry maps a name to ``"module:function"``: a function taking the validated
`Settings` and returning a `forge.runtime.base.Runtime`. Only names are held here (nothing
is imported), so validating the setting stays cheap and the configuration layer never
depends on an engine; `forge.runtime.factory.make_runtime` imports the chosen engine lazily.
Adding an engine (e.g. ``"kubernetes": "forge.runtime.kubernetes:build"``) is one entry
here and its package; no caller changes.
"""

from __future__ import annotations

DEFAULT_ENGINE = "local"
ENGINES: dict[str, str] = {
    "local": "forge.runtime.local:build",
}


def engine_problem(var: str = "FORGE_RUNTIME_ENGINE") -> str:
    """The operator-facing line for an unknown engine name, listing the choices."""
    return f"{var} must be one of: {', '.join(sorted(ENGINES))}"
