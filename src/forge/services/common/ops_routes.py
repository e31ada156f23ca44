"""Operator endpoints every service with NATS subscribers shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request

from forge.bus import DurableConsumer
from forge.config.settings import Settings
from forge.services.common.auth import check_operator
from forge.services.common.openapi import errors


def add_subscriber_routes(
    app: FastAPI, settings: Settings, consumers: Callable[[], Sequence[DurableConsumer]]
) -> None:
    """`POST /v1/admin/nats/restart-subscriber`: the runbook's "restart NATS subscriber"."""

    @app.post("/v1/admin/nats/restart-subscriber", tags=["ops"], responses=errors(401, 503))
    async def restart_subscriber(request: Request) -> dict[str, Any]:
        check_operator(request, settings)
        results = {c.durable: await c.restart() for c in consumers()}
        return {"restarted": results}
