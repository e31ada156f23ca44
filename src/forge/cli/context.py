"""Shared helpers for CLI commands: load settings (or exit 1 naming the problems), open the DB."""

from __future__ import annotations

import sys

import typer

from forge.config.settings import ConfigError, Settings, load_settings
from forge.store.db import Database
from forge.store.migrate import upgrade


def settings_or_exit() -> Settings:
    """Settings as a service would load them; a bad environment exits 1 with every problem."""
    try:
        return load_settings()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(1) from None


def open_db(settings: Settings) -> Database:
    """The state DB, migrated to the current schema."""
    upgrade(settings.db_url)
    return Database(settings.db_url)
