"""Receipts: minted after a charge (stub here; a payment gateway would call the same code)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from forge.config.settings import Settings
from forge.errors import ForgeError
from forge.identity.caller import SUBJECT_PROOFS
from forge.identity.names import valid_id
from forge.plans import PlanCatalog
from forge.tokens import RECEIPT, mint_token, verify_token

MAX_RECEIPT_DAYS = 366


class CheckoutError(ForgeError):
    """A checkout or receipt request is refused; the message and `details` name the field."""


def _invalid(field: str, message: str) -> CheckoutError:
    return CheckoutError("checkout_refused", 400, f"{field}: {message}", [{"field": field}])


@dataclass(frozen=True)
class Receipt:
    """A minted receipt and its verified claims."""

    token: str
    claims: dict[str, Any]


def issue_receipt(
    settings: Settings,
    catalog: PlanCatalog,
    *,
    tenant_id: str,
    plan: str,
    subject: str | None = None,
    days: int = 30,
    charge_id: str | None = None,
    subject_proof: str = "operator",
) -> Receipt:
    """Mint a receipt for `plan`; validates every field first. `subject_proof` records how
    the subject was established (see forge.identity.caller.SUBJECT_PROOFS)."""
    if subject_proof not in SUBJECT_PROOFS:
        raise _invalid("subject_proof", f"one of {', '.join(SUBJECT_PROOFS)}")
    if not valid_id(tenant_id):
        raise _invalid("tenant_id", "1-128 chars of letters, digits and . _ @ : -")
    if subject is not None and not valid_id(subject):
        raise _invalid("subject", "1-128 chars of letters, digits and . _ @ : -")
    known = catalog.get(plan)
    if known is None:
        raise _invalid("plan", f"unknown plan; allowed: {', '.join(catalog.names)}")
    if not 1 <= days <= MAX_RECEIPT_DAYS:
        raise _invalid("days", f"must be between 1 and {MAX_RECEIPT_DAYS}")
    claims: dict[str, Any] = {
        "tenant_id": tenant_id,
        "plan": known.name,
        "retention_days": known.retention_days,
        "charge_id": charge_id or f"ch_{secrets.token_hex(12)}",
    }
    if subject:
        claims["sub"] = subject
        claims["sub_proof"] = subject_proof
    token = mint_token(settings.receipt, RECEIPT, claims, ttl_s=days * 86400)
    return Receipt(token, verify_token(settings.receipt, RECEIPT, token))


def new_subject() -> str:
    """A fresh learner id for a buyer who is not signed in (never an existing learner)."""
    return f"learner-{secrets.token_hex(8)}"


def ensure_stub_billing(settings: Settings) -> None:
    """Refuse checkout unless BILLING_MODE=stub (which configuration allows only in dev)."""
    if settings.billing_mode != "stub":
        raise CheckoutError("checkout_unavailable", 403,
                            f"billing mode {settings.billing_mode!r} has no checkout here")


def stub_checkout(
    settings: Settings, catalog: PlanCatalog, *, tenant_id: str, plan: str,
    subject: str, subject_proof: str, days: int = 30,
) -> Receipt:
    """BILLING_MODE=stub: a fake, always-successful charge, then a real receipt for `subject`
    (the signed-in buyer, proof "caller", or a learner just created for them, proof "new")."""
    ensure_stub_billing(settings)
    if subject_proof not in ("caller", "new"):
        raise _invalid("subject", "checkout names only the buyer or a new learner")
    charge_id = f"ch_stub_{secrets.token_hex(10)}"
    return issue_receipt(settings, catalog, tenant_id=tenant_id, plan=plan, subject=subject,
                         days=days, charge_id=charge_id, subject_proof=subject_proof)
