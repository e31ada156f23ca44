"""Operator reads of what only the scoreboard keeps: signing key ids and retention holds.

The operator page (spawn_service) used to read the scoreboard's keyring and hold list from
a disk both could see. Services share no disk, so the page asks here instead, with the
operator token (checked in constant time against every key of the ring). Answers carry key
ids and dates, never key material.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from forge.errors import ForgeError
from forge.retention.holds import HoldError, HoldStore
from forge.services.common.openapi import errors
from forge.services.scoreboard.access import operator_only, scoreboard_state
from forge.signing.keystore import SigningKeyError

router = APIRouter()


@router.get("/v1/admin/signing-keys", tags=["admin"], dependencies=[Depends(operator_only)],
            responses=errors(401, 503))
async def signing_keys(request: Request) -> dict[str, Any]:
    """The scoreboard's signing key ids: created, retired, revoked, current, able to sign."""
    keyring = scoreboard_state(request).scorer.keyring
    try:
        keys = await run_in_threadpool(keyring.list_keys)
    except (SigningKeyError, OSError) as exc:
        raise ForgeError("unavailable", 503,
                         f"signing keys unreadable ({type(exc).__name__})") from None
    return {"keys": [asdict(k) for k in keys]}


@router.get("/v1/admin/retention/holds", tags=["admin"], dependencies=[Depends(operator_only)],
            responses=errors(401, 503))
async def retention_holds(request: Request) -> dict[str, Any]:
    """Scenarios whose results retention cleanup must keep, with since when and why."""
    store = HoldStore(scoreboard_state(request).settings.storage_root)
    try:
        holds = await run_in_threadpool(store.list)
    except (HoldError, OSError) as exc:
        raise ForgeError("unavailable", 503,
                         f"retention holds unreadable ({type(exc).__name__})") from None
    return {"holds": [asdict(h) for h in holds]}
