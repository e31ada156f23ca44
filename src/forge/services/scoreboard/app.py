"""scoreboard app assembly."""

from __future__ import annotations

from fastapi import FastAPI

from forge.config.settings import Settings
from forge.services.common.app import create_app, make_context, storage_writable

NAME = "scoreboard"
DEFAULT_PORT = 8086


def build_app(settings: Settings) -> FastAPI:
    """The scoreboard FastAPI app."""
    ctx = make_context(NAME, settings)
    ctx.readiness.add("storage", lambda: storage_writable(settings.storage_root))
    return create_app(ctx)
