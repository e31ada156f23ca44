"""orchestrator app assembly."""

from __future__ import annotations

from fastapi import FastAPI

from forge.config.settings import Settings
from forge.services.common.app import create_app, make_context, storage_writable

NAME = "orchestrator"
DEFAULT_PORT = 8083


def build_app(settings: Settings) -> FastAPI:
    """The orchestrator FastAPI app."""
    ctx = make_context(NAME, settings)
    ctx.readiness.add("storage", lambda: storage_writable(settings.storage_root))
    return create_app(ctx)
