"""Registry of `forge` command groups.

Each group lives in its own module under forge.cli and exposes either `app` (a Typer
sub-app) or `register(app)` for top-level commands; this file only wires them in.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add every command group to the root app (imports are local to keep startup fast)."""

    from forge.cli import apikey, config_check, entitlements, receipt, secrets, serve

    serve.register(app)
    app.add_typer(secrets.app, name="secrets")
    config_check.register(app)
    app.add_typer(apikey.app, name="apikey")
    app.add_typer(entitlements.app, name="entitlements")
    app.add_typer(receipt.app, name="receipt")

