"""Operator endpoints every service with NATS subscribers shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request

from forge.bus import DurableConsumer
from forge.services.common.app import ServiceContext
from forge.services.common.auth import require_operator
from forge.services.common.openapi import errors


def add_subscriber_routes(
    app: FastAPI, ctx: ServiceContext, consumers: Callable[[], Sequence[DurableConsumer]]
) -> None:
    """`POST /v1/admin/nats/restart-subscriber`: the runbook's "restart NATS subscriber"."""

    @app.post("/v1/admin/nats/restart-subscriber", tags=["ops"], responses=errors(401, 503))
    async def restart_subscriber(request: Request) -> dict[str, Any]:
        await require_operator(request, ctx.settings, ctx.name, ctx.operator_keys)
        results = {c.durable: await c.restart() for c in consumers()}
        return {"restarted": results}
