"""Checkout refusals carry their status from where they are raised: a billing mode without
checkout is 403 `checkout_unavailable`, a bad field is 400 `checkout_refused` naming it; the
route never guesses the status from the message text."""

from __future__ import annotations

import pytest

from forge.billing.receipts import CheckoutError, ensure_stub_billing, issue_receipt
from forge.plans import load_plans

from .conftest import MakeSpawn


@pytest.mark.parametrize(("forge_env", "mode"), [("prod", None), ("dev", "gateway")])
def test_checkout_without_stub_billing_is_403_with_its_code(
        make_spawn: MakeSpawn, forge_env: str, mode: str | None) -> None:
    env = make_spawn(forge_env, **({"BILLING_MODE": mode} if mode else {}))
    with env.client() as client:
        resp = client.post("/v1/billing/checkout", json={"plan": "PRO", "tenant_id": "acme"})
    assert resp.status_code == 403
    body = resp.json()
    assert body["error"] == "checkout_unavailable"
    assert body["message"] == f"billing mode {env.settings.billing_mode!r} has no checkout here"


def test_field_refusals_are_400_naming_the_field(make_spawn: MakeSpawn) -> None:
    env = make_spawn("dev")
    with env.client() as client:
        resp = client.post("/v1/billing/checkout", json={"plan": "GOLD", "tenant_id": "acme"})
    assert resp.status_code == 400
    assert resp.json()["error"] == "checkout_refused"
    assert resp.json()["details"] == [{"field": "plan"}]
    assert resp.json()["message"].startswith("plan: unknown plan; allowed: ")


def test_receipt_errors_state_their_status_where_raised(make_spawn: MakeSpawn) -> None:
    env = make_spawn("prod")
    with pytest.raises(CheckoutError) as refused:
        ensure_stub_billing(env.settings)
    assert (refused.value.code, refused.value.status) == ("checkout_unavailable", 403)
    catalog = load_plans(env.settings.plans_file)
    with pytest.raises(CheckoutError) as bad:
        issue_receipt(env.settings, catalog, tenant_id="acme", plan="PRO", days=0)
    assert (bad.value.code, bad.value.status) == ("checkout_refused", 400)
    assert bad.value.details == [{"field": "days"}]
    assert str(bad.value) == "days: must be between 1 and 366"  # what `forge receipt mint` prints


def test_a_flag_or_a_text_is_not_a_number_of_days(make_spawn: MakeSpawn) -> None:
    """{"days": true} bought a receipt for one day (true converted to 1): now 422."""
    env = make_spawn("dev")
    with env.client() as client:
        for lax in (True, "30", 30.0):
            resp = client.post("/v1/billing/checkout",
                               json={"plan": "PRO", "tenant_id": "acme", "days": lax})
            assert resp.status_code == 422, (lax, resp.text)
            assert resp.json()["details"][0]["field"] == "days"
