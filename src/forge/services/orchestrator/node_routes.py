"""Operator endpoints over the lab nodes (`forge nodes list|drain|undrain` calls these)."""

from __future__ import annotations

import time
from typing import Any

import nats.errors
from fastapi import APIRouter, Request

from forge.bus.errors import BusError
from forge.bus.nodes import NodeRegistry
from forge.config.node_settings import NODE_ID_RE
from forge.errors import ForgeError
from forge.services.common.openapi import errors
from forge.services.orchestrator.routes import operator_orch, orch
from forge.services.orchestrator.sweeper import live_elsewhere

router = APIRouter()


async def _registry(request: Request) -> NodeRegistry:
    state = await operator_orch(request)
    if state.node is None or state.node.kv is None:
        raise ForgeError("nodes_unavailable", 503, "this orchestrator runs without lab nodes")
    return state.node.kv


def _bus_down() -> ForgeError:
    return ForgeError("bus_unavailable", 503, "the node registry (NATS KV) is unreachable; "
                      "retry", headers={"Retry-After": "5"})


@router.get("/v1/admin/nodes", tags=["operator"], responses=errors(401, 503))
async def list_nodes(request: Request) -> dict[str, Any]:
    """Every node: registered ones from KV, and lost ones still named by live labs."""
    kv = await _registry(request)
    state = orch(request)
    now = time.time()
    try:
        records = await kv.records()
        holder = await kv.lease_holder()
    except (BusError, nats.errors.Error, TimeoutError):
        raise _bus_down() from None
    own = state.settings.node_id
    placed = await state.blocking(live_elsewhere, state.ctx.db, own)
    items: list[dict[str, Any]] = []
    for rec in records:
        alive = rec.age(now) <= kv.grace_s
        labs: int = rec.labs_in_use
        memory: int | None = rec.memory_in_use_mb
        if not alive and rec.node_id != own:
            # A lost node's record is its last heartbeat: the labs the lease holder failed
            # since are not on it any more. Its live labs are the store's (their memory is
            # known only while they are all still there).
            labs = len(placed.get(rec.node_id, []))
            memory = memory if labs == rec.labs_in_use else 0 if labs == 0 else None
        items.append({
            "node_id": rec.node_id, "url": rec.url, "labs_in_use": labs,
            "capacity_labs": rec.capacity_labs, "memory_in_use_mb": memory,
            "capacity_memory_mb": rec.capacity_memory_mb, "draining": rec.draining,
            "heartbeat_age_s": round(rec.age(now), 1),
            "state": "lost" if not alive else "stopped" if rec.stopped else "alive",
            "version": rec.version, "lease": rec.node_id == holder,
            "self": rec.node_id == state.settings.node_id})
    seen = {rec.node_id for rec in records}
    for node_id, live in sorted(placed.items()):
        if node_id not in seen:
            items.append({"node_id": node_id, "url": None, "labs_in_use": len(live),
                          "capacity_labs": None, "memory_in_use_mb": None,
                          "capacity_memory_mb": None, "draining": None,
                          "heartbeat_age_s": None, "state": "lost", "version": None,
                          "lease": False, "self": False})
    return {"items": items, "count": len(items), "grace_s": kv.grace_s}


async def _set_drain(request: Request, node_id: str, on: bool) -> dict[str, Any]:
    kv = await _registry(request)
    if not NODE_ID_RE.fullmatch(node_id):
        raise ForgeError("invalid_node_id", 400, "node_id: 1-32 of a-z, 0-9 and -",
                         [{"field": "node_id"}])
    try:
        if await kv.get(node_id) is None:
            raise ForgeError("unknown_node", 404, f"node_id: no registered node {node_id}",
                             [{"field": "node_id", "value": node_id}])
        await kv.set_draining(node_id, on)
    except (BusError, nats.errors.Error, TimeoutError):
        raise _bus_down() from None
    return {"node_id": node_id, "draining": on}


@router.post("/v1/admin/nodes/{node_id}/drain", tags=["operator"],
             responses=errors(400, 401, 404, 503))
async def drain(node_id: str, request: Request) -> dict[str, Any]:
    """The node takes no new labs from its next heartbeat on; running labs finish."""
    return await _set_drain(request, node_id, True)


@router.post("/v1/admin/nodes/{node_id}/undrain", tags=["operator"],
             responses=errors(400, 401, 404, 503))
async def undrain(node_id: str, request: Request) -> dict[str, Any]:
    """The node takes new labs again."""
    return await _set_drain(request, node_id, False)
