"""Registry of `forge` command groups (one line per group, so modules stay independent)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add every command group to the root app."""
