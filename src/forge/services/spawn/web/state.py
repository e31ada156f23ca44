"""What the web UI keeps for the app's lifetime: templates (task texts) and the backend client."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from forge.grading.learner_aids import CheckLimits
from forge.services.spawn.web.backend import Backend
from forge.services.spawn.web.score_cache import SummaryCache
from forge.templates.registry import TemplateRegistry

# The four result files a learner may download, with their media types.
ARTIFACT_NAMES = {
    "score.json": "application/json",
    "evidence.tar.zst": "application/zstd",
    "evidence.tar.gz": "application/gzip",
    "verdict.sig": "application/vnd.dsse.envelope.v1+json",
    "verdict.pub": "application/x-pem-file",
}


@dataclass(frozen=True)
class WebState:
    """Templates by name and the client for the internal services."""

    templates: TemplateRegistry
    backend: Backend
    check_limits: CheckLimits = field(default_factory=CheckLimits)  # "Check this task"
    summaries: SummaryCache = field(default_factory=SummaryCache)  # the dashboard's scores


def web_state(request: Request) -> WebState:
    """The app's WebState (set by `forge.services.spawn.web.install`)."""
    state: WebState = request.app.state.forge_web
    return state
