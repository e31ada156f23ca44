"""The learner and operator web UI, served by spawn_service (server-rendered, no build step)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from forge.config.settings import Settings
from forge.services.common.http_client import SharedHttpClient
from forge.services.spawn.web import (
    account,
    checkout,
    classroom_pages,
    credential,
    dashboard_api,
    dashboard_pages,
    lab_pages,
    lti_deep_link,
    lti_pages,
    oidc_pages,
    ops,
    recordings,
    signin_pages,
    tasks,
    teach,
    track_pages,
)
from forge.services.spawn.web.backend import Backend
from forge.services.spawn.web.errors import install_error_pages
from forge.services.spawn.web.render import STATIC_DIR, WEB_PACKAGE
from forge.services.spawn.web.state import WebState
from forge.templates.registry import TemplateRegistry

__all__ = ["install"]


def install(app: FastAPI, settings: Settings, http: SharedHttpClient,
            templates: TemplateRegistry | None = None) -> None:
    """Add the pages, the static files and the web state to spawn_service's app; calls to
    the other services go through the app's shared client `http` (the app closes it)."""
    registry = templates if templates is not None else TemplateRegistry.load(
        settings.templates_dir)
    app.state.forge_web = WebState(templates=registry, backend=Backend(settings, http))
    app.include_router(signin_pages.router)
    app.include_router(track_pages.router)
    app.include_router(lab_pages.router)
    app.include_router(ops.router)
    app.include_router(recordings.router)
    app.include_router(credential.router)
    app.include_router(checkout.router)
    app.include_router(classroom_pages.router)
    app.include_router(teach.router)
    app.include_router(dashboard_pages.router)  # instructor dashboard (issue 18 item 3)
    app.include_router(dashboard_api.router)
    app.include_router(account.router)
    app.include_router(tasks.router)
    oidc_pages.install(app, settings)  # sign-in with a tenant's identity provider (issue 18)
    lti_pages.install(app, settings)  # launches from an LMS, LTI 1.3 (issue 18 item 4)
    app.include_router(lti_deep_link.router)
    install_error_pages(app)  # browsers get pages, the JSON API keeps its error bodies
    app.mount("/static", StaticFiles(packages=[(WEB_PACKAGE, STATIC_DIR)]), name="static")
