"""spawn_service app assembly."""

from __future__ import annotations

from fastapi import FastAPI

from forge.config.settings import Settings
from forge.services.common.app import create_app, make_context, storage_writable

NAME = "spawn_service"
DEFAULT_PORT = 8082


def build_app(settings: Settings) -> FastAPI:
    """The spawn_service FastAPI app."""
    ctx = make_context(NAME, settings)
    ctx.readiness.add("storage", lambda: storage_writable(settings.storage_root))
    return create_app(ctx)
