"""Entitlement resolution, first match wins, and the ET that records it."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forge.config.settings import Settings
from forge.entitlements.grants import (
    EntitlementsFileError,
    lookup_file_grant,
    lookup_grant,
    receipt_revoked,
)
from forge.errors import ForgeError
from forge.identity.caller import Caller
from forge.plans import Plan, PlanCatalog
from forge.store.db import Database
from forge.tokens import ET, RECEIPT, TokenError, mint_token_claims, verify_token


class EntitlementError(ForgeError):
    """No entitlement, or a bad one (a bad receipt, a plan that does not exist)."""


@dataclass(frozen=True)
class Entitlement:
    """The plan a caller holds and where that came from."""

    tenant_id: str
    subject: str
    plan: Plan
    source: str
    retention_days: int
    receipt_jti: str | None = None

    def et_claims(self) -> dict[str, Any]:
        return {
            "sub": self.subject,
            "tenant_id": self.tenant_id,
            "plan": self.plan.name,
            "tracks": list(self.plan.tracks),
            "retention_days": self.retention_days,
            "source": self.source,
        }


def verify_receipt(settings: Settings, token: str) -> dict[str, Any]:
    """Verified receipt claims, or EntitlementError 401 naming the defect."""
    try:
        return verify_token(settings.receipt, RECEIPT, token)
    except TokenError as exc:
        raise EntitlementError("invalid_receipt", 401, f"x-receipt-token: {exc}") from exc


def _from_receipt(caller: Caller, claims: Mapping[str, Any], catalog: PlanCatalog) -> Entitlement:
    if claims["tenant_id"] != caller.tenant_id:
        raise EntitlementError("receipt_tenant_mismatch", 403,
                               "x-receipt-token: receipt belongs to another tenant")
    if claims.get("sub") and claims["sub"] != caller.subject:
        raise EntitlementError("receipt_subject_mismatch", 403,
                               "x-receipt-token: receipt belongs to another learner")
    plan = catalog.get(str(claims["plan"]))
    if plan is None:
        raise EntitlementError("unknown_plan", 403, "x-receipt-token: receipt names no known plan")
    return Entitlement(caller.tenant_id, caller.subject, plan, "receipt",
                       int(claims["retention_days"]), str(claims["jti"]))


def receipt_plan_revoked(db: Database, tenant_id: str, subject: str,
                         claims: Mapping[str, Any]) -> bool:
    """True when `forge entitlements revoke` ended this receipt's plan for this learner
    (their own revoke or their tenant's, recorded in the receipt's second of issue or
    later). Only the plan: the receipt still proves who the learner is."""
    return receipt_revoked(db, tenant_id, subject, math.floor(claims["iat"]))


def resolve_entitlement(
    caller: Caller,
    *,
    settings: Settings,
    catalog: PlanCatalog,
    db: Database,
    receipt_claims: Mapping[str, Any] | None = None,
    x_plan: str | None = None,
    entitlements_file: Path | None = None,
) -> Entitlement:
    """Receipt (unless revoked) → store (DB, then optional file) → x-plan (dev flag) →
    free default (dev flag)."""
    revoked = False
    if receipt_claims is not None:
        bought = _from_receipt(caller, receipt_claims, catalog)
        revoked = receipt_plan_revoked(db, caller.tenant_id, caller.subject, receipt_claims)
        if not revoked:
            return bought
    plan_name = lookup_grant(db, caller.tenant_id, caller.subject, datetime.now(UTC))
    if plan_name is None and entitlements_file is not None and entitlements_file.exists():
        try:
            plan_name = lookup_file_grant(entitlements_file, caller.tenant_id, caller.subject)
        except EntitlementsFileError as exc:
            # The operator's fault, named in the log and the `entitlement_store` readiness
            # check; the caller is told to retry, never given a 500 or another plan.
            logging.getLogger("forge.entitlements").error("%s", exc)
            raise EntitlementError("entitlement_store_unavailable", 503,
                                   "the entitlement store cannot be read just now; try again "
                                   "later", headers={"Retry-After": "30"}) from None
    if plan_name is not None:
        plan = catalog.get(plan_name)
        if plan is None:
            raise EntitlementError("unknown_plan", 403, "entitlement names no known plan")
        return Entitlement(caller.tenant_id, caller.subject, plan, "store", plan.retention_days)
    if x_plan and settings.dev_allow_xplan:
        plan = catalog.get(x_plan)
        if plan is None:
            raise EntitlementError("unknown_plan", 400,
                                   f"x-plan: unknown plan; allowed: {', '.join(catalog.names)}")
        return Entitlement(caller.tenant_id, caller.subject, plan, "x-plan", plan.retention_days)
    if settings.allow_free_default:
        plan = catalog.get("FREE")
        if plan is not None:
            return Entitlement(caller.tenant_id, caller.subject, plan, "free_default",
                               plan.retention_days)
    raise _not_found(revoked)


def _not_found(receipt_revoked: bool) -> EntitlementError:
    if receipt_revoked:
        return EntitlementError("entitlement_not_found", 403,
                                "no entitlement: the plan of this receipt was revoked; buy a "
                                "plan or ask your operator for a grant",
                                [{"field": "receipt", "revoked": True}])
    return EntitlementError("entitlement_not_found", 403,
                            "no entitlement: buy a plan (receipt) or ask your operator for a grant")


def mint_et(settings: Settings, entitlement: Entitlement) -> tuple[str, dict[str, Any]]:
    """Mint the ET recording this decision; returns the token and its claims."""
    return mint_token_claims(settings.et, ET, entitlement.et_claims())
