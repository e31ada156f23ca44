"""One error type, mapped to HTTP once: a ForgeError raised anywhere in a route of any service
(the route itself, a worker thread, a subclass from a concept package) answers the shared
body {"error", "message", "details"} with its own status and headers."""

from __future__ import annotations

from fastapi.testclient import TestClient
from starlette.concurrency import run_in_threadpool

from forge.billing.receipts import CheckoutError
from forge.entitlements.resolve import EntitlementError
from forge.errors import ForgeError
from forge.identity.caller import AuthError


def _raises(error: ForgeError, in_thread: bool = False):  # type: ignore[no-untyped-def]
    def fail() -> None:
        raise error

    async def route() -> None:
        if in_thread:
            await run_in_threadpool(fail)
        fail()

    return route


def test_forge_error_becomes_the_shared_body_with_its_status(
        service_client: TestClient) -> None:
    app = service_client.app
    cases = {
        "/_t/plain": (ForgeError("lab_busy", 409, "track: a lab is already running",
                                 [{"field": "track"}], headers={"Retry-After": "7"}), False),
        "/_t/thread": (EntitlementError("entitlement_not_found", 403, "no entitlement"), True),
        "/_t/auth": (AuthError("credentials_required", 401, "sign in"), False),
        "/_t/checkout": (CheckoutError("checkout_unavailable", 403, "no checkout here"), True),
    }
    for path, (error, in_thread) in cases.items():
        app.add_api_route(path, _raises(error, in_thread))  # type: ignore[attr-defined]
    plain = service_client.get("/_t/plain")
    assert plain.status_code == 409
    assert plain.json() == {"error": "lab_busy", "message": "track: a lab is already running",
                            "details": [{"field": "track"}]}
    assert plain.headers["retry-after"] == "7"
    for path, status, code in (("/_t/thread", 403, "entitlement_not_found"),
                               ("/_t/auth", 401, "credentials_required"),
                               ("/_t/checkout", 403, "checkout_unavailable")):
        resp = service_client.get(path)
        assert resp.status_code == status, path
        assert resp.json()["error"] == code and resp.json()["details"] == []


def test_an_unidentified_caller_is_401_in_the_shared_shape(
        service_client: TestClient) -> None:
    """Identity errors reach the caller through the one handler, not per-route translation."""
    service = service_client.app.state.ctx.name  # type: ignore[attr-defined]
    path = {"spawn_service": "/v1/scenarios/scn-0123456789abcdef",
            "orchestrator": "/v1/scenarios/scn-0123456789abcdef",
            "scoreboard": "/v1/scores/scn-0123456789abcdef"}[service]
    resp = service_client.get(path)
    assert resp.status_code == 401
    assert resp.json()["error"] == "credentials_required"
    assert resp.json()["message"].startswith("sign in")


def test_forge_error_keeps_its_fields() -> None:
    error = ForgeError("bad_field", 400, "days: 1-366", [{"field": "days"}])
    assert (error.code, error.status, error.message, error.details) == (
        "bad_field", 400, "days: 1-366", [{"field": "days"}])
    assert str(error) == "days: 1-366" and error.headers is None
