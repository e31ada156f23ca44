"""The caller of a request, with the API's `x-receipt-token` as the last way to sign in.

Every service that names a learner resolves them the same way (`resolve_caller`'s order:
API key, session cookie, receipt naming its learner, dev headers). The receipt header is
verified only when nothing before it signed the request in: a stale receipt sent along
with a valid key never locks the key out, and a bad one then is 401 `invalid_receipt`.
The scoreboard's refusal told API learners to send "a receipt naming the learner" but
never read one, so following the message gave the same 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forge.config.settings import Settings
from forge.entitlements.resolve import verify_receipt
from forge.identity.caller import AuthError, Caller, resolve_caller
from forge.store.db import Database

RECEIPT_HEADER = "x-receipt-token"


def caller_of(headers: Mapping[str, str], cookies: Mapping[str, str], settings: Settings,
              db: Database, *, method: str, receipt: dict[str, Any] | None = None) -> Caller:
    """The verified caller (blocking: it reads the store), or AuthError. ``receipt``:
    claims already verified (the browser's receipt cookie); without them, the
    `x-receipt-token` header counts when nothing else signed the request in."""
    def resolve(claims: dict[str, Any] | None) -> Caller:
        return resolve_caller(headers, cookies, settings, db, claims, method=method)

    token = headers.get(RECEIPT_HEADER)
    if receipt is not None or not token:
        return resolve(receipt)
    try:
        return resolve(None)
    except AuthError as exc:
        if exc.code != "credentials_required":
            raise
    return resolve(verify_receipt(settings, token.strip()))
